"""What int8 query encoding costs and buys: nDCG@10 and per-query latency of one dense index's query
encoder in float32 torch, float32 ONNX Runtime and dynamically quantised int8 ONNX Runtime.

The documents are encoded once, in float32 (the index is the same for every row); only the query
encoder changes. Latency is one query at a time (batch 1, one intra-op thread: how the service encodes
a request), over the first ``--latency-queries`` test queries, each backend warmed up first, the
backends interleaved query by query so that machine load hits them alike.

Usage::

    DISTILIR_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.query_quantization.run \\
        [--datasets scifact,arguana] [--index scifact=/path/to/flat-index]

Indexes not given with ``--index`` are built (and cached) by ``distilir.candidates.build_index``
with all-MiniLM-L6-v2. Writes ``benchmarks/reports/query_quantization.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks._common import data_dir, write_report

REPORT = Path(__file__).resolve().parents[1] / "reports" / "query_quantization.md"
VARIANTS = {
    "torch fp32": {"backend": "torch"},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8": {"backend": "onnx", "query_quantization": "int8"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--datasets", default="scifact,arguana")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--index", action="append", default=[], help="DATASET=FOLDER of a built dense index")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--report", type=Path, default=REPORT)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    root = data_dir(args.data_dir)
    given = dict(item.split("=", 1) for item in args.index)

    import torch
    from distilir_index import Retriever

    from distilir.candidates import FirstStageConfig, build_index, index_path
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.evaluation import evaluate

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    rows, latency_rows = [], []
    for name in args.datasets.split(","):
        ds = load_dataset(root / name)
        if name in given:
            folder = Path(given[name])
        else:
            cfg = FirstStageConfig("dense", model=args.model)
            build_index(ds, cfg)
            folder = index_path(ds, cfg)
        queries = {q: v.text for q, v in ds.queries("test").items()}
        qrels = ds.qrels("test")
        qids = sorted(q for q in queries if q in qrels)
        texts = [queries[q] for q in qids]
        conv = conventions_for(ds.name)
        retrievers = {
            label: Retriever.load(folder, encoder_options={**opts, "threads": 1})
            for label, opts in VARIANTS.items()
        }
        scores, embeddings = {}, {}
        for label, retriever in retrievers.items():
            t0 = time.perf_counter()
            hits = retriever.search_many(texts, k=100)
            seconds = time.perf_counter() - t0
            run = {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)}
            scores[label] = evaluate(run, qrels, measures=("nDCG@10", "R@100"), conventions=conv)
            embeddings[label] = retriever.index.encoder.encode_queries(texts[:256])
            print(
                f"  {name} {label}: nDCG@10 {scores[label].aggregate['nDCG@10']:.4f} ({seconds:.0f}s)",
                flush=True,
            )
        ref = embeddings["torch fp32"]
        for label in retrievers:
            e = embeddings[label]
            cos = np.sum(e * ref, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
            agg = scores[label].aggregate
            rows.append(
                [
                    name,
                    label,
                    f"{agg['nDCG@10']:.4f}",
                    f"{agg['nDCG@10'] - scores['torch fp32'].aggregate['nDCG@10']:+.4f}",
                    f"{agg['R@100']:.4f}",
                    f"{cos.min():.4f}",
                    f"{cos.mean():.5f}",
                ]
            )
        # latency: one query at a time, backends interleaved
        encoders = {label: r.index.encoder for label, r in retrievers.items()}
        sample = texts[: args.latency_queries]
        for enc in encoders.values():
            enc.encode_queries(sample[:3])
        times = {label: [] for label in encoders}
        for i, text in enumerate(sample):
            labels = list(encoders)
            for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
                t0 = time.perf_counter()
                encoders[label].encode_queries([text])
                times[label].append(time.perf_counter() - t0)
        base = np.median(times["torch fp32"])
        for label, ts in times.items():
            p50, p99 = np.percentile(ts, [50, 99]) * 1000
            latency_rows.append([name, label, f"{p50:.1f}", f"{p99:.1f}", f"{base / np.median(ts):.2f}x"])
    cli = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# int8 query encoding: what it costs and buys",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
        f"`python -m benchmarks.query_quantization.run {cli}` in {time.perf_counter() - t_start:.0f} s.",
        "",
        f"- Index: {args.model} flat (exact inner product) over each test collection's corpus, documents "
        "encoded in float32 once; only the query encoder changes between rows.",
        "- int8: onnxruntime `quantize_dynamic` (weights int8, activations quantised per batch) of the "
        "exported transformer; pooling and normalisation stay float32.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; one intra-op "
        "thread for every encoder.",
        "",
        "## Effectiveness (all judged test queries)",
        "",
        "| dataset | query encoder | nDCG@10 | vs torch fp32 | R@100 | min cosine to fp32 | mean cosine |",
        "|---|---|---:|---:|---:|---:|---:|",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        f"## Query encoding latency (one query per call, first {args.latency_queries} test queries)",
        "",
        "| dataset | query encoder | p50 (ms) | p99 (ms) | p50 speed-up vs torch |",
        "|---|---|---:|---:|---:|",
        *["| " + " | ".join(r) + " |" for r in latency_rows],
        "",
    ]
    write_report(args.report, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
