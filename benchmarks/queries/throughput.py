"""Generation throughput of the query generators (queries per second, seconds per 1,000 documents),
measured on the same seeded documents of one collection in one run.

    DISTILIR_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.queries.throughput \\
        --dataset scifact --docs 2000 --llm-docs 24 --threads 2

Writes ``benchmarks/reports/query_generation.md``. The LLM row uses fewer documents (``--llm-docs``)
because a causal LM on a CPU is three to four orders of magnitude slower than the model-free
generators; its figures are per document, so they compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "reports" / "query_generation.md"


def main(argv: list[str] | None = None) -> int:
    import torch

    from distilir.data import load_dataset
    from distilir.queries import QueryStore, build_generator

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--llm-docs", type=int, default=24)
    p.add_argument("--llm", default="llm:smollm2-135m-instruct?types=claim&max_new_tokens=32&temperature=0.7")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    corpus = ds.corpus()
    ids = sorted(corpus)
    rows = []
    for spec, n in (
        ("title", args.docs),
        ("crop?per_doc=2&max_words=30", args.docs),
        (args.llm, args.llm_docs),
    ):
        t_load = time.perf_counter()
        gen = build_generator(spec)
        load_s = time.perf_counter() - t_load
        docs = [corpus[d] for d in ids[:n]]
        with tempfile.TemporaryDirectory() as tmp:
            with QueryStore.open(Path(tmp) / "s", gen) as store:
                stats = store.generate(gen, docs, batch_docs=8 if gen.kind == "llm" else 256, progress=False)
                sample = [r.text for r in store.rows()[:3]]
        rows.append((spec, n, load_s, stats, sample))
        print(spec, stats, sample)
    lines = [
        "# Query generation throughput",
        "",
        f"`python -m benchmarks.queries.throughput --dataset {args.dataset} --docs {args.docs} "
        f"--llm-docs {args.llm_docs} --threads {args.threads}`; one run, {args.threads} torch threads, this "
        "2-core CPU machine (no GPU). Seconds include writing the store (atomic parts, manifest).",
        "",
        "| generator | documents | queries | model load s | queries/s | s per 1,000 documents "
        "| first queries |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for spec, n, load_s, stats, sample in rows:
        shown = " / ".join(s[:70] for s in sample)
        lines.append(
            f"| `{spec}` | {n} | {stats['queries']} | {load_s:.1f} | {stats['queries_per_second']} | "
            f"{stats['seconds_per_1000_docs']} | {shown} |"
        )
    REPORT.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
