"""Corpus-poisoning audit of all-MiniLM-L6-v2 serving scifact: attack success and defence figures.

    python -m benchmarks.poison.run [--topics 5] [--steps 200] [--threads 1]

Runs :func:`distilir.audit.poison_audit` (the code behind ``distilir audit poison``): HotFlip passages
crafted on the model's weights for the largest scifact query topics (spherical k-means, 40 clusters
over the 1,109 train + test queries), each topic's queries split in half -- targets / held-out --,
the share of held-out queries whose top 10 holds the passage, a naive passage (the target queries'
texts joined) beside it, then the defence on scifact with the crafted passages added (reference:
scifact's train queries minus the held-out ones) and on clean cacm and arguana with their own
queries, and on the clean corpora given (default: cacm, arguana, cranfield, lisa, time). Seed 2 by
default: runs with seeds 0 and 1 were looked at while the defence was reworked (see the report), so
these topics, splits and passages are fresh for it. Writes benchmarks/reports/poison.md and
poison.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def markdown(report: dict[str, Any], meta: dict[str, Any]) -> str:
    a, d = report["attack"], report["defence"]
    lines = [
        "# Corpus poisoning audit: scifact, all-MiniLM-L6-v2",
        "",
        f"Generated {meta['generated']} by `{meta['command']}` ({meta['machine']}).",
        "",
        f"Attack: {a['length']}-token passages, {a['steps']} HotFlip steps of {a['candidates']} exact "
        "candidates each, on the model's own weights (`distilir.audit.craft_passage`); success = share of "
        "the topic's held-out queries whose exact top 10 (corpus + that one passage) holds it. "
        "Naive = the target queries' texts joined into one passage.",
        "",
        "| topic | target queries | held-out | attack top-10 rate | naive top-10 rate "
        "| attack cosine to targets | naive cosine | passage (first 120 characters) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in report["topics"]:
        lines.append(
            f"| {t['topic']} | {t['targets']} | {t['held_out']} | {t['attack_top10']:.2f} "
            f"| {t['naive_top10']:.2f} | {t['attack_cosine_to_targets']} | {t['naive_cosine_to_targets']} "
            f"| `{t['passage'][:120]}` |"
        )
    lines += [
        "",
        f"**Mean top-10 rate on held-out queries: attack {report['attack_top10_rate']:.3f}, naive "
        f"{report['naive_top10_rate']:.3f}** (GASLITE reports 61–100% with its much longer optimisation "
        "on GPUs).",
        "",
        f"Defence (`distilir.audit.flag_documents`, k={d['k']}, hub ratio {d['hub_ratio']} with at least "
        f"{d['min_occurrence']} queries, centroid z "
        f"{d['centroid_z']}): {report['reference_queries']} reference queries (scifact train, the "
        f"held-out ones removed). Detection of the crafted passages {report['detection_rate']:.2f}; false "
        f"positives on scifact's real documents {report['false_positives']} "
        f"({report['false_positive_rate']:.4%}). Crafted "
        f"passages: occurrence {report['crafted_scores']['occurrence']}, hub ratio "
        f"{report['crafted_scores']['hub_ratio']}, centroid z {report['crafted_scores']['centroid_z']}; the "
        f"real documents' largest: hub ratio {report['real_documents']['max_hub_ratio']}, centroid z "
        f"{report['real_documents']['max_centroid_z']}. Clean corpora: "
        + ", ".join(
            f"{c['dataset']} ({c['documents']} documents, {c['queries']} queries, largest hub ratio "
            f"{c['max_hub_ratio']})"
            for c in report["clean"]
        )
        + ".",
        "",
        "| hub-ratio threshold | detection (crafted) | false positives scifact | "
        + " | ".join(f"false positives {c['dataset']} (clean)" for c in report["clean"])
        + " |",
        "|---:|---:|---:|" + "---:|" * len(report["clean"]),
    ]
    for t, row in report["threshold_sweep"].items():
        names = [f"false_positive_rate {c['dataset']}" for c in report["clean"]]
        clean = " | ".join(f"{row[n]:.4%}" for n in names)
        lines.append(f"| {t} | {row['detection_rate']:.2f} | {row['false_positive_rate']:.4%} | {clean} |")
    lines += [
        "",
        "The sweep shows the trade-off; it selects nothing. How the defence came to be (each change "
        "made after looking at a run, each figure above from data the change had not seen): run 1 (seed "
        "0) with the first defence, the mean cosine to the 10 nearest reference queries as a robust z > 6, "
        "detected none of the crafted passages (0.20 at z > 3 with 0.25 % false positives: "
        "[poison_run1_knn_defence.md](poison_run1_knn_defence.md)); the hub ratio > 10 replaced it, chosen "
        "on run 1's passages and scifact's documents; run 2 (seed 1, "
        "[poison_run2_seed1.md](poison_run2_seed1.md)) detected 5/5 with false positives 0 % on scifact, "
        "0.02 % on arguana but 3.4 % on cacm, whose 64 reference queries make one query's top 10 a large "
        "ratio; the "
        "minimum of 10 ranking queries was added for that. This run (seed 2) has fresh topics, splits and "
        "passages; cranfield, lisa and time are clean corpora not looked at before; cacm and arguana were "
        "(run 2).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topics", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2, help="seed of the topics, splits and attacks")
    parser.add_argument(
        "--clean", nargs="+", default=["cacm", "arguana", "cranfield", "lisa", "time"], help="clean corpora"
    )
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    import torch

    from distilir.audit import AttackConfig, poison_audit
    from distilir.data import load_dataset

    torch.set_num_threads(args.threads)
    started = time.time()
    report = poison_audit(
        load_dataset("scifact"),
        "all-MiniLM-L6-v2",
        attack=AttackConfig(length=args.length, steps=args.steps, candidates=args.candidates, seed=args.seed),
        topics=args.topics,
        clean=[load_dataset(name) for name in args.clean],
        progress=lambda line: print(line, flush=True),
    )
    meta = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": f"python -m benchmarks.poison.run --topics {args.topics} --steps {args.steps} "
        f"--seed {args.seed} --threads {args.threads} --clean {' '.join(args.clean)}",
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s), "
        f"{round(time.time() - started)} s in all",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poison.json").write_text(json.dumps({**meta, **report}, indent=1) + "\n")
    (args.out / "poison.md").write_text(markdown(report, meta))
    print(markdown(report, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
