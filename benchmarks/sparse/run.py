"""SPLADE sparse index vs BM25 on a BEIR collection (SciFact test by default): effectiveness,
efficiency, and a check that the sparse index's top-10 equals brute force.

What is measured (one process, models loaded once):

* SPLADE (``SparseIndex`` + ``SparseEncoder``, default ``splade-tiny``, title + " " + text):
  document encoding throughput and build time (when the index is built in this run), index size on
  disk, query encoding throughput, search-only throughput (all queries in one batched call, weights
  precomputed), single-query latency p50/p99 search-only and end to end (encode + search);
* BM25 (``distilir_index.bm25.BM25Index``, Lucene-like analysis, k1=0.9, b=0.4): build time,
  batched throughput and single-query latency;
* nDCG@10 and R@100 of both runs (top 100) with ir_measures, on the judged queries of the split;
* exactness: for every query, the sparse index's top 10 against a brute-force dense numpy dot
  product (float64) of the same query and document vectors: share of queries whose ranked ids are
  identical, and the largest score difference.

Usage (one process at a time on a shared machine)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
      .venv/bin/python -m benchmarks.sparse.run --check

The SPLADE index is cached in ``--index-dir`` (default ``$DISTILIR_CACHE/bench/sparse-<dataset>``)
and reused when its corpus fingerprint and encoder match (``--rebuild`` forces a build, which is
what measures encoding throughput). Writes ``benchmarks/reports/sparse.md`` (``--report``); with
``--check``, compares against ``conditions.yaml`` and prints OK / FAIL per expected value (exit 1
on any FAIL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import data_dir
from distilir.data import load_dataset
from distilir.evaluation import evaluate

HERE = Path(__file__).resolve().parent
REPORT = HERE.parent / "reports" / "sparse.md"
MEASURES = ("nDCG@10", "R@100")


# --------------------------------------------------------------------------------------------------
# Run details
# --------------------------------------------------------------------------------------------------
def result_time() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------
def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"p50_ms": statistics.median(ms), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def latency(search, queries: list[Any], k: int) -> dict[str, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search([q], k=k)
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def throughput(search, queries: list[Any], k: int, repeats: int = 3) -> float:
    """Queries per second of one batched call (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        search(queries, k=k)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def brute_force_check(index, q_matrix, hits, k: int = 10, chunk: int = 512) -> dict[str, float]:
    """Top-k ids of every query against dense numpy dot products over the index's own vectors."""
    docs = index.document_matrix()  # [positions, terms]; save() compacted, so positions = live docs
    ids = index.document_ids()
    q = q_matrix.toarray().astype(np.float64)
    scores = np.empty((q.shape[0], docs.shape[0]), dtype=np.float64)
    for start in range(0, docs.shape[0], chunk):
        block = docs[start : start + chunk].toarray().astype(np.float64)
        scores[:, start : start + chunk] = q @ block.T
    same, max_diff, near_tie = 0, 0.0, 0
    positions = np.arange(docs.shape[0])
    for i, row in enumerate(scores):
        order = np.lexsort((positions, -row))[:k]
        ref_ids = [ids[p] for p in order]
        got = hits[i][:k]
        if [h.id for h in got] == ref_ids:
            same += 1
        else:  # count mismatches explained by scores equal within float32 rounding
            got_scores = np.array([h.score for h in got])
            if np.allclose(np.sort(got_scores), np.sort(row[order]), rtol=1e-6, atol=1e-6):
                near_tie += 1
        max_diff = max(max_diff, float(np.abs(np.array([h.score for h in got]) - row[order]).max()))
    n = len(scores)
    return {
        "queries": n,
        "top10_identical": same / n,
        "top10_tie_only_differences": near_tie / n,
        "max_abs_score_diff": max_diff,
    }


# --------------------------------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------------------------------
def splade_system(args, corpus: dict[str, str], qids: list[str], queries: dict[str, str]) -> dict[str, Any]:
    from distilir_index import CorpusFingerprint, read_manifest
    from distilir_index.models import cache_dir
    from distilir_index.sparse import SparseIndex
    from distilir_index.sparse_encoder import SparseEncoder

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    encoder = SparseEncoder(args.model, max_length=args.max_length, batch_size=args.batch_size)
    out["model_load_s"] = time.perf_counter() - t0
    fp = CorpusFingerprint()
    for d, t in corpus.items():
        fp.update(d, t)
    path = Path(args.index_dir or cache_dir() / "bench" / f"sparse-{args.dataset}-{Path(encoder.name).name}")
    build_log = path.with_name(path.name + ".build.json")
    index = None
    if not args.rebuild and (path / "manifest.json").is_file():
        manifest = read_manifest(path, kind="sparse")
        if (
            manifest["corpus"].get("fingerprint") == fp.hexdigest()
            and manifest["encoder"] == encoder.describe()
        ):
            index = SparseIndex.load(path, encoder=encoder)
            out["built"] = False
            print(f"reusing the SPLADE index in {path}")
            if build_log.is_file():  # the build measured when this cached index was made
                out["earlier_build"] = json.loads(build_log.read_text(encoding="utf-8"))
    if index is None:
        index = SparseIndex(encoder, store_text=False, show_progress=True)
        ids, texts = list(corpus), list(corpus.values())
        t0 = time.perf_counter()
        for start in range(0, len(ids), 1024):
            index.add(ids[start : start + 1024], texts[start : start + 1024])
        out["encode_and_add_s"] = time.perf_counter() - t0
        out["docs_per_s"] = len(ids) / out["encode_and_add_s"]
        t0 = time.perf_counter()
        index.save(path)
        out["save_s"] = time.perf_counter() - t0
        out["built"] = True
        build = {k: out[k] for k in ("encode_and_add_s", "docs_per_s", "save_s")}
        build.update(created=result_time(), torch_threads=torch_threads())
        build_log.write_text(json.dumps(build, indent=2) + "\n", encoding="utf-8")
    out["index_bytes"] = dir_size(path)
    out["index_dir"] = str(path)

    texts = [queries[q] for q in qids]
    t0 = time.perf_counter()
    q_matrix = encoder.encode_queries_csr(texts)
    out["query_encode_per_s"] = len(texts) / (time.perf_counter() - t0)
    weights = encoder.to_dicts(q_matrix)
    hits = index.search(weights, k=100)
    out["metrics"] = evaluate(
        {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)},
        args.qrels,
        MEASURES,
    ).aggregate
    out["search_only_qps"] = throughput(index.search, weights, k=10)
    out["latency_search_only"] = latency(index.search, weights[: args.latency_queries], k=10)
    out["latency_end_to_end"] = latency(index.search, texts[: args.latency_queries], k=10)
    out["stats"] = index.stats(weights)
    out["exactness"] = brute_force_check(index, q_matrix, hits, k=10)
    out["encoder"] = encoder.describe()
    return out


def bm25_system(args, corpus: dict[str, str], qids: list[str], queries: dict[str, str]) -> dict[str, Any]:
    from distilir_index.bm25 import BM25Index

    out: dict[str, Any] = {}
    index = BM25Index(k1=0.9, b=0.4, store_text=False, show_progress=False)
    t0 = time.perf_counter()
    index.add(list(corpus), list(corpus.values()))
    index.refresh()
    out["build_s"] = time.perf_counter() - t0
    texts = [queries[q] for q in qids]
    hits = index.search(texts, k=100)
    out["metrics"] = evaluate(
        {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)},
        args.qrels,
        MEASURES,
    ).aggregate
    out["qps"] = throughput(index.search, texts, k=10)
    out["latency"] = latency(index.search, texts[: args.latency_queries], k=10)
    out["settings"] = index.get_config_dict()
    return out


# --------------------------------------------------------------------------------------------------
# Checks and report
# --------------------------------------------------------------------------------------------------
def lookup(result: dict[str, Any], dotted: str) -> float:
    value: Any = result
    for part in dotted.split("."):
        value = value[part]
    return float(value)


def check(result: dict[str, Any], conditions_file: Path) -> list[tuple[str, float, float, float, bool]]:
    import yaml

    spec = yaml.safe_load(conditions_file.read_text(encoding="utf-8"))
    rows = []
    for key, (expected, tol) in (spec.get("expected") or {}).items():
        ours = lookup(result, key)
        rows.append(
            (key, ours, float(expected), float(tol), abs(ours - float(expected)) <= float(tol) + 1e-12)
        )
    for key, minimum in (spec.get("minimum") or {}).items():
        ours = lookup(result, key)
        rows.append((key, ours, float(minimum), float("inf"), ours >= float(minimum)))
    return rows


def write_report(result: dict[str, Any], checks: list, path: Path, command: str) -> None:
    s, b = result["splade"], result["bm25"]
    sm, bm = s["metrics"], b["metrics"]
    ls, le, lb = s["latency_search_only"], s["latency_end_to_end"], b["latency"]
    ex, st = s["exactness"], s["stats"]
    lines = [
        f"# Sparse (SPLADE) index vs BM25 — {result['dataset']} {result['split']}",
        "",
        f"Generated {result['created']} by `benchmarks/sparse/run.py` on {result['machine']}.",
        "",
        "Reproduce:",
        "",
        "```",
        command,
        "```",
        "",
        f"{result['queries']} judged queries, {result['documents']:,} documents (title + text). "
        "Runs are top 100; metrics from ir_measures. Throughput and latency use k = 10. The machine "
        "(2 cores) was shared with other jobs while this ran, so timings are noisy (expect ±20–50 %).",
        "",
        "## Effectiveness",
        "",
        "| system | nDCG@10 | R@100 |",
        "|---|---:|---:|",
        f"| SPLADE ({s['encoder']['name']}, max_length {s['encoder']['max_length']}, SparseIndex) | "
        f"{sm['nDCG@10']:.4f} | {sm['R@100']:.4f} |",
        f"| BM25 (BM25Index: k1 0.9, b 0.4, Lucene-like analysis) | {bm['nDCG@10']:.4f} | "
        f"{bm['R@100']:.4f} |",
        "",
        "## Efficiency",
        "",
        "| | SPLADE | BM25 |",
        "|---|---:|---:|",
        f"| batched search, queries/s (SPLADE: query weights precomputed) | {s['search_only_qps']:,.0f} | "
        f"{b['qps']:,.0f} |",
        f"| one query per call, search only: p50 / p99 ms | {ls['p50_ms']:.2f} / {ls['p99_ms']:.2f} | "
        f"{lb['p50_ms']:.2f} / {lb['p99_ms']:.2f} |",
        f"| one query per call, encoding + search: p50 / p99 ms | {le['p50_ms']:.2f} / {le['p99_ms']:.2f} | "
        "(as above) |",
        f"| query encoding, batched, queries/s | {s['query_encode_per_s']:,.0f} | – |",
    ]
    built = s if s.get("built") else s.get("earlier_build")
    if built:
        bm25_docs_s = result["documents"] / b["build_s"]
        docs_s = built["docs_per_s"]
        lines.append(f"| build, documents/s (SPLADE: encode + add) | {docs_s:,.1f} | {bm25_docs_s:,.0f} |")
        lines.append(f"| index build time (s) | {built['encode_and_add_s']:,.1f} | {b['build_s']:,.1f} |")
    else:
        reused = "cached index reused (`--rebuild` times it)"
        lines.append(f"| index build time (s) | {reused} | {b['build_s']:,.1f} |")
    if not s.get("built") and built:
        lines.append(
            f"| (SPLADE build measured {built['created']} when the cached index was made, "
            f"torch threads {built['torch_threads']}) | | |"
        )
    identical = f"**{100 * ex['top10_identical']:.1f} %** identical ranked ids"
    if ex["top10_tie_only_differences"]:
        share = 100 * ex["top10_tie_only_differences"]
        identical += f" ({share:.1f} % differ only among float32-equal scores)"
    lines += [
        f"| SPLADE index on disk | {s['index_bytes'] / 2**20:,.1f} MiB | – |",
        "",
        f"SPLADE sparsity: {st['avg_terms_per_document']:.1f} non-zero terms per document, "
        f"{st['avg_terms_per_query']:.1f} per query; {st['postings']:,} postings over {st['terms']:,} terms.",
        "",
        "## Exactness of the sparse index",
        "",
        f"Top 10 of each of the {ex['queries']} queries against brute-force dense numpy dot products "
        "(float64) "
        f"of the same query and document vectors: {identical}; largest score difference "
        f"{ex['max_abs_score_diff']:.2e}.",
    ]
    if checks:
        lines += [
            "",
            "## Checks (conditions.yaml)",
            "",
            "| value | ours | expected | tolerance | |",
            "|---|---:|---:|---:|---|",
        ]
        for key, ours, expected, tol, ok in checks:
            tol_s = "minimum" if tol == float("inf") else f"± {tol}"
            lines.append(f"| {key} | {ours:.4f} | {expected:.4f} | {tol_s} | {'OK' if ok else 'FAIL'} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", help="folder of BEIR-format collections (default: $DISTILIR_DATA_DIR)")
    p.add_argument("--dataset", default="scifact")
    p.add_argument("--split", default="test")
    p.add_argument("--model", default="splade-tiny", help="SPLADE model: hub id, folder or packaged name")
    p.add_argument(
        "--max-length", type=int, default=None, help="document/query truncation (default: the model's)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--index-dir", help="where the SPLADE index is cached (default under $DISTILIR_CACHE/bench)"
    )
    p.add_argument("--rebuild", action="store_true", help="encode the corpus even if a cached index matches")
    p.add_argument("--latency-queries", type=int, default=100, help="queries timed one at a time")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument("--check", action="store_true", help="compare with conditions.yaml; exit 1 on FAIL")
    args = p.parse_args(argv)

    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    folder = data_dir(args.data_dir) / args.dataset
    ds = load_dataset(folder)
    corpus = {doc_id: doc.full_text for doc_id, doc in ds.corpus().items()}
    queries = {qid: q.text for qid, q in ds.queries(args.split).items()}
    args.qrels = ds.qrels(args.split)
    qids = sorted(queries, key=lambda q: (len(q), q))
    print(f"{args.dataset}/{args.split}: {len(corpus):,} documents, {len(qids)} judged queries")

    result: dict[str, Any] = {
        "dataset": args.dataset,
        "split": args.split,
        "documents": len(corpus),
        "queries": len(qids),
        "corpus_ids": list(corpus),
        "created": result_time(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch threads {torch_threads()}",
    }
    result["bm25"] = bm25_system(args, corpus, qids, queries)
    print(f"BM25   nDCG@10={result['bm25']['metrics']['nDCG@10']:.4f}  {result['bm25']['qps']:,.0f} q/s")
    result["splade"] = splade_system(args, corpus, qids, queries)
    s = result["splade"]
    print(
        f"SPLADE nDCG@10={s['metrics']['nDCG@10']:.4f}  {s['search_only_qps']:,.0f} q/s search-only, "
        f"top-10 identical to brute force for {100 * s['exactness']['top10_identical']:.1f} % of queries"
    )

    checks = check(result, HERE / "conditions.yaml") if args.check else []
    for key, ours, expected, tol, ok in checks:
        bound = f">= {expected}" if tol == float("inf") else f"{expected} ± {tol}"
        print(f"    {'OK  ' if ok else 'FAIL'} {key}: {ours:.4f} (expected {bound})")
    command = "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data "
    args_text = " ".join(argv if argv is not None else sys.argv[1:])
    command += ".venv/bin/python -m benchmarks.sparse.run " + args_text
    write_report(result, checks, args.report, command.strip())
    print(f"wrote {args.report}")
    return 0 if all(c[-1] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
