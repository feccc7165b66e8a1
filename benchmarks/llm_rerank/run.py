"""Rerank BM25 top-k with the LLM teachers and report nDCG@10 beside BM25's.

Pipeline: BM25 (bm25s, k1=0.9, b=0.4, English stopwords + Snowball English stemmer, title+text) over
the whole corpus -> top ``--depth`` per query -> each teacher rescores those candidates -> nDCG@10,
RR@10 (``distilir.evaluation``, ir_measures) of each reranked run, with throughput. The queries are
the judged queries of the split, or a fixed seeded sample of ``--queries`` of them
(``random.Random(seed).sample`` of the sorted query ids), so runs are comparable.

Usage (one process at a time on a shared machine)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
      .venv/bin/python -m benchmarks.llm_rerank.run --queries 100 --modes query_likelihood,yes_no,listwise

Writes ``report.json`` (numbers, settings, teacher configs and fingerprints) and ``report.md`` to
``--out`` (default ``benchmarks/out/llm_rerank``, git-ignored), and ``run.<mode>.trec`` per mode;
with ``--check``, compares against ``conditions.yaml`` and prints OK / FAIL per condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("query_likelihood", "yes_no", "listwise")


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def write_trec(run: dict[str, dict[str, float]], path: Path, tag: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        for qid, docs in run.items():
            for rank, (did, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1):
                f.write(f"{qid} Q0 {did} {rank} {s:.6f} {tag}\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Teachers
# --------------------------------------------------------------------------------------------------


def build(mode: str, lm: Any, args: argparse.Namespace):
    from distilir.teachers.llm_listwise import LLMListwiseTeacher
    from distilir.teachers.llm_pointwise import LLMPointwiseTeacher

    if mode == "listwise":
        return LLMListwiseTeacher(
            lm,
            window=args.window,
            stride=args.stride,
            batch_size=1,
            prompt=args.listwise_prompt,
            max_passage_tokens=args.listwise_passage_tokens,
            progress=True,
        )
    prompt = args.ql_prompt if mode == "query_likelihood" else args.yes_no_prompt
    return LLMPointwiseTeacher(
        lm, mode=mode, prompt=prompt, max_length=args.max_length, batch_size=args.batch_size, progress=True
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument(
        "--queries", type=int, default=0, help="seeded sample of this many judged queries (0: all)"
    )
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--max-length", type=int, default=128, help="pointwise: tokens per scored sequence")
    p.add_argument("--ql-prompt", default="query_likelihood")
    # Chosen on a 12-query pilot (seed 7): the plain yes/no prompt ranked below random with SmolLM2.
    p.add_argument("--yes-no-prompt", default="yes_no_chatml")
    p.add_argument("--listwise-prompt", default="listwise")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--listwise-passage-tokens", type=int, default=48)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch default); 1: two collapse on a shared 2-core machine",
    )
    p.add_argument("--out", default=str(HERE.parent / "out" / "llm_rerank"))
    p.add_argument("--check", action="store_true", help="compare with conditions.yaml; exit 1 on FAIL")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        sys.exit(f"unknown mode(s) {bad}; choose from {MODES}")

    import torch

    from benchmarks._common import bm25s_run, data_dir
    from distilir.data import load_dataset
    from distilir.evaluation import evaluate
    from distilir.teachers.llm_common import load_causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ds = load_dataset(data_dir(args.data_dir) / args.dataset)
    corpus = {doc_id: doc.full_text for doc_id, doc in ds.corpus().items()}
    queries = {qid: q.text for qid, q in ds.queries(args.split).items()}
    qrels = ds.qrels(args.split)
    if args.queries and args.queries < len(queries):
        chosen = sorted(random.Random(args.seed).sample(sorted(queries), args.queries))
        queries = {q: queries[q] for q in chosen}
    qrels = {q: qrels[q] for q in queries}
    t0 = time.perf_counter()
    bm25 = bm25s_run(ds, queries, args.depth)
    bm25_s = time.perf_counter() - t0
    measures = ("nDCG@10", "RR@10")
    results: dict[str, Any] = {"bm25": {**evaluate(bm25, qrels, measures).aggregate, "seconds": bm25_s}}
    write_trec(bm25, out / "run.bm25.trec", "bm25")
    print(
        f"BM25 top-{args.depth}: nDCG@10={results['bm25']['nDCG@10']:.4f}  ({len(queries)} queries)",
        flush=True,
    )

    t0 = time.perf_counter()
    lm = load_causal_lm(args.model) if modes else None
    load_s = time.perf_counter() - t0
    qids = list(queries)
    configs = {}
    for mode in modes:
        teacher = build(mode, lm, args)
        cand = [list(bm25[q]) for q in qids]
        t0 = time.perf_counter()
        scores = teacher.score_many([queries[q] for q in qids], [[corpus[d] for d in c] for c in cand])
        secs = time.perf_counter() - t0
        run = {q: dict(zip(c, s, strict=True)) for q, c, s in zip(qids, cand, scores, strict=True)}
        agg = evaluate(run, qrels, measures).aggregate
        pairs = sum(len(c) for c in cand)
        results[mode] = {
            **agg,
            "seconds": secs,
            "pairs": pairs,
            "pairs_per_s": pairs / secs,
            "fingerprint": teacher.fingerprint,
        }
        configs[mode] = teacher.get_config_dict()
        write_trec(run, out / f"run.{mode}.trec", mode)
        print(
            f"{mode}: nDCG@10={agg['nDCG@10']:.4f} RR@10={agg['RR@10']:.4f}  "
            f"{pairs} pairs in {secs:.0f} s ({pairs / secs:.1f} pairs/s)",
            flush=True,
        )

    report = {
        "dataset": args.dataset,
        "split": args.split,
        "queries": len(queries),
        "query_sample": {"n": args.queries, "seed": args.seed} if args.queries else None,
        "depth": args.depth,
        "model": lm.describe() if lm else None,
        "model_load_seconds": load_s,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "check", "data_dir")},
        "results": results,
        "teachers": configs,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    tmp = out / "report.json.partial"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    lines = [
        f"# LLM rerank of BM25 top-{args.depth}: {args.dataset} {args.split}, {len(queries)} queries",
        "",
        f"model: {args.model} ({lm.describe()['weights'] if lm else 'not loaded'})",
        "",
        "| run | nDCG@10 | RR@10 | pairs/s |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        speed = f"{r['pairs_per_s']:.1f}" if "pairs_per_s" in r else "–"
        lines.append(f"| {name} | {r['nDCG@10']:.4f} | {r['RR@10']:.4f} | {speed} |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))

    if args.check:
        return check(results, args)
    return 0


def check(results: dict[str, Any], args: argparse.Namespace) -> int:
    """OK / FAIL per expected value of conditions.yaml, if its settings are this run's settings."""
    import yaml

    spec = yaml.safe_load((HERE / "conditions.yaml").read_text(encoding="utf-8"))
    mine = vars(args)
    differ = {k: (v, mine.get(k)) for k, v in spec["settings"].items() if mine.get(k) != v}
    if differ:
        print(f"conditions.yaml does not apply to this run; settings differ (expected, got): {differ}")
        return 1
    failed = 0
    for run_name, (expected, tolerance) in spec["expected"].items():
        if run_name not in results:
            continue
        got = results[run_name]["nDCG@10"]
        ok = abs(got - expected) <= tolerance
        failed += not ok
        verdict = "OK  " if ok else "FAIL"
        print(f"{verdict} {run_name}: nDCG@10 {got:.4f} (expected {expected:.4f} ± {tolerance})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
