"""Approximate nearest-neighbour benchmark of ``distilir_index.dense.DenseIndex``.

For each dataset it builds the exact index ("flat") and the approximate ones ("hnsw", "ivfpq",
"sq8" with exact rescoring), then reports, per search setting (HNSW efSearch, IVF nprobe):

* recall@10 against exact top-10 (``faiss.knn`` brute force over the same vectors);
* latency per query, single query per call on 1 thread (p50 / p99 over ``--single-queries``);
* batched search of all queries on ``--threads`` threads (ms per query and queries/s);
* build time (add + training) and the saved artifact's size (FAISS file, float vectors kept for
  rescoring, document table).

Datasets:

(a) ``scifact``: the 5,183 SciFact abstracts (title + text) and its 1,109 queries embedded with
    all-MiniLM-L6-v2 (DenseEncoder, normalised). Embeddings are cached as .npy under
    ``--cache-dir`` (default ``$DISTILIR_CACHE/ann`` or ``~/.cache/distilir/ann``), keyed by the model
    fingerprint and the corpus file.
(b) ``synthetic``: ``--synthetic-n`` (default 1,000,000) seeded, structured 384-d unit vectors: a
    Gaussian mixture of ``--clusters`` (default 4,000) clusters in a 48-d latent space, lifted to
    384-d by a fixed random linear map plus small isotropic noise, then L2-normalised -- clustered and
    of low intrinsic dimension, like real sentence embeddings (i.i.d. Gaussian vectors would be the
    unrealistic worst case where all neighbours are nearly equidistant). Queries come from the same
    mixture with another seed.

Requirement checked: on the 1M set, HNSW at recall@10 >= 0.98 must be >= 10x faster than exact
search (single-query p50). Prints OK / FAIL, and the report.

Usage (one benchmark at a time on a shared machine)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        .venv/bin/python -m benchmarks.ann.run --threads 2

Writes ``benchmarks/reports/ann.json`` (all numbers and settings) and ``benchmarks/reports/ann.md``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting are ruinous on a shared, oversubscribed machine (PQ training
# measured 10x slower here with the default active wait). Must be set before FAISS loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPORTS = HERE.parent / "reports"


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def cache_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    base = os.environ.get("DISTILIR_CACHE") or Path.home() / ".cache" / "distilir"
    return Path(base) / "ann"


def scifact_embeddings(data_dir: Path, cache: Path, model: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """SciFact corpus and all its queries embedded with ``model`` (cached .npy)."""
    from distilir_index.encoders import DenseEncoder

    from distilir.data import load_dataset

    folder = data_dir / "scifact"
    corpus_file = folder / "corpus.jsonl.gz"
    encoder = DenseEncoder(model, batch_size=32)
    desc = encoder.describe()
    key = hashlib.sha256(
        json.dumps(
            {k: desc[k] for k in ("fingerprint", "normalize", "max_length", "pooling")}, sort_keys=True
        ).encode()
        + hashlib.sha256(corpus_file.read_bytes()).digest()
        + hashlib.sha256((folder / "queries.jsonl.gz").read_bytes()).digest()
    ).hexdigest()[:16]
    docs_file, queries_file = cache / f"scifact-{key}-docs.npy", cache / f"scifact-{key}-queries.npy"
    info = {"model": model, "fingerprint": desc["fingerprint"], "cache_key": key}
    if docs_file.is_file() and queries_file.is_file():
        return np.load(docs_file), np.load(queries_file), {**info, "cached": True}
    ds = load_dataset(folder)
    docs = [doc.full_text for doc in ds.corpus().values()]
    queries = [q.text for q in ds.queries().values()]
    t0 = time.perf_counter()
    xb = encoder.encode_documents(docs, show_progress=True)
    encode_s = time.perf_counter() - t0
    xq = encoder.encode_queries(queries, show_progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    for file, array in ((docs_file, xb), (queries_file, xq)):
        tmp = file.with_name(file.name + ".partial")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, file)
    return xb, xq, {**info, "cached": False, "encode_docs_s": round(encode_s, 1)}


def synthetic(
    n: int, nq: int, d: int, clusters: int, seed: int = 0, latent: int = 48, query_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded structured unit vectors (see the module docstring); generated in chunks. ``query_seed``
    draws other queries from the same mixture (default: seed + 2)."""
    rs = np.random.RandomState(seed)
    centers = rs.randn(clusters, latent).astype(np.float32)
    lift = (rs.randn(latent, d) / np.sqrt(latent)).astype(np.float32)

    def draw(count: int, rng: np.random.RandomState) -> np.ndarray:
        out = np.empty((count, d), dtype=np.float32)
        for s in range(0, count, 100_000):
            m = min(100_000, count - s)
            z = centers[rng.randint(clusters, size=m)] + 0.5 * rng.randn(m, latent).astype(np.float32)
            x = z @ lift + 0.05 * rng.randn(m, d).astype(np.float32)
            out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    queries = np.random.RandomState(seed + 2 if query_seed is None else query_seed)
    return draw(n, np.random.RandomState(seed + 1)), draw(nq, queries)


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def recall_at(hits: list, truth: np.ndarray, k: int = 10) -> float:
    got = [{int(h.id) for h in hs[:k]} for hs in hits]
    return float(np.mean([len(g & set(t[:k].tolist())) / k for g, t in zip(got, truth, strict=True)]))


def time_single(index: Any, xq: np.ndarray, n: int, **search_kw: Any) -> dict[str, float]:
    """p50/p99 latency of one query per call, on one thread."""
    import faiss

    faiss.omp_set_num_threads(1)
    index.search(xq[:1], k=10, **search_kw)  # warm-up
    times = []
    for i in range(min(n, len(xq))):
        t0 = time.perf_counter()
        index.search(xq[i : i + 1], k=10, **search_kw)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "n": len(times),
    }


def time_batched(index: Any, xq: np.ndarray, threads: int, **search_kw: Any) -> tuple[list, dict[str, float]]:
    import faiss

    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    hits = index.search(xq, k=10, **search_kw)
    s = time.perf_counter() - t0
    return hits, {"ms_per_query": 1000 * s / len(xq), "qps": len(xq) / s}


def artifact_sizes(index: Any, scratch: Path) -> dict[str, int]:
    """Save the index and report the bytes of each file role (then delete the copy)."""
    shutil.rmtree(scratch, ignore_errors=True)
    index.save(scratch)
    manifest = json.loads((scratch / "manifest.json").read_text())
    sizes = {role: (scratch / name).stat().st_size for role, name in manifest["files"].items()}
    shutil.rmtree(scratch, ignore_errors=True)
    return sizes


def bench_dataset(
    name: str,
    xb: np.ndarray,
    xq: np.ndarray,
    args: argparse.Namespace,
    scratch: Path,
    kinds: list[str],
    nlist: int | None = None,
) -> dict[str, Any]:
    import faiss
    from distilir_index.dense import DenseIndex

    n, d = xb.shape
    print(f"\n== {name}: {n:,} x {d} vectors, {len(xq):,} queries", flush=True)
    faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    _, truth = faiss.knn(xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)
    gt_s = time.perf_counter() - t0
    ids = [str(i) for i in range(n)]
    single_n = args.single_queries

    configs: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("flat", {}, [{}]),
        (
            "hnsw",
            {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction},
            [{"ef_search": ef} for ef in args.ef_search],
        ),
        (
            "ivfpq",
            {"nlist": nlist} if nlist else {},
            [{"nprobe": p} for p in args.nprobe]
            + [{"nprobe": p, "rescore_factor": 4} for p in args.nprobe[-2:]],
        ),
        ("sq8", {}, [{"rescore_factor": 4}, {"rescore_factor": 1}]),
    ]
    rows: list[dict[str, Any]] = []
    for kind, build_kw, sweep in configs:
        if kind not in kinds:
            continue
        gc.collect()
        faiss.omp_set_num_threads(args.threads)
        index = DenseIndex(index=kind, store_text=False, show_progress=n >= 100_000, **build_kw)
        t0 = time.perf_counter()
        index.add(ids, vectors=xb)
        index.search(xq[:1], k=1)  # trains IVF-PQ, adds its buffered vectors
        build_s = time.perf_counter() - t0
        sizes = artifact_sizes(index, scratch / f"{name}-{kind}")
        print(f"  {kind:5s} ({index.factory}) built in {build_s:.1f} s; files {sizes}", flush=True)
        for setting in sweep:
            hits, batched = time_batched(index, xq, args.threads, **setting)
            single = time_single(index, xq, single_n if kind != "flat" else max(20, single_n // 4), **setting)
            row = {
                "index": kind,
                "factory": index.factory,
                "setting": setting,
                "recall@10": recall_at(hits, truth),
                "single": single,
                "batched": batched,
                "build_s": build_s,
                "bytes": sizes,
            }
            rows.append(row)
            print(
                f"    {json.dumps(setting):32s} recall@10 {row['recall@10']:.4f}"
                f"  single p50 {single['p50_ms']:.3f} ms p99 {single['p99_ms']:.3f} ms"
                f"  batched {batched['ms_per_query']:.3f} ms/q ({batched['qps']:.0f} q/s)",
                flush=True,
            )
        del index, hits
    return {"name": name, "n": n, "d": d, "queries": len(xq), "exact_ground_truth_s": gt_s, "rows": rows}


def check_requirement(
    result: dict[str, Any], min_recall: float = 0.98, min_speedup: float = 10.0
) -> dict[str, Any]:
    """HNSW at recall@10 >= min_recall must be >= min_speedup x faster than exact (single-query p50)."""
    exact = [r for r in result["rows"] if r["index"] == "flat"]
    good = [r for r in result["rows"] if r["index"] == "hnsw" and r["recall@10"] >= min_recall]
    if not exact or not good:
        return {"ok": False, "reason": "no HNSW setting reached the recall" if exact else "no exact baseline"}
    best = min(good, key=lambda r: r["single"]["p50_ms"])
    speedup = exact[0]["single"]["p50_ms"] / best["single"]["p50_ms"]
    batched = exact[0]["batched"]["ms_per_query"] / best["batched"]["ms_per_query"]
    return {
        "ok": speedup >= min_speedup,
        "ef_search": best["setting"].get("ef_search"),
        "recall@10": best["recall@10"],
        "speedup_single_p50": speedup,
        "speedup_batched": batched,
        "rule": f"HNSW recall@10 >= {min_recall} and >= {min_speedup}x faster than exact (single-query p50)",
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _mb(b: int | None) -> str:
    return "-" if not b else f"{b / 2**20:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# ANN benchmark (distilir_index.dense.DenseIndex over FAISS)",
        "",
        f"Generated {report['created']} by `python -m benchmarks.ann.run {' '.join(report['argv'])}`.",
        f"Machine: {env['cpus']} CPUs ({env['machine']}), FAISS {env['faiss']}, numpy {env['numpy']}, "
        f"load average at start {env['load_start']}, at end {env['load_end']} "
        "(a shared machine: timings are noisy).",
        f"Build and batched search on {report['settings']['threads']} threads; "
        "single-query latency on 1 thread.",
        "recall@10 is against exact top-10 (faiss.knn brute force). Sizes are the saved files: FAISS index, "
        "float vectors kept for rescoring (`vectors.npy`, memory-mappable), and ids/metadata.",
        "",
    ]
    for res in report["datasets"]:
        lines += [
            f"## {res['name']}: {res['n']:,} vectors x {res['d']}, {res['queries']:,} queries",
            "",
        ]
        if res.get("info"):
            lines += [f"Data: {json.dumps(res['info'])}", ""]
        lines += [
            "| index | FAISS | setting | recall@10 | single p50 ms | single p99 ms | batched ms/q "
            "| batched q/s "
            "| build s | FAISS MB | vectors MB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["rows"]:
            setting = ", ".join(f"{k}={v}" for k, v in r["setting"].items()) or "-"
            lines.append(
                f"| {r['index']} | `{r['factory']}` | {setting} | {r['recall@10']:.4f} "
                f"| {r['single']['p50_ms']:.3f} | {r['single']['p99_ms']:.3f} "
                f"| {r['batched']['ms_per_query']:.3f} | {r['batched']['qps']:,.0f} "
                f"| {r['build_s']:.1f} | {_mb(r['bytes'].get('faiss'))} | {_mb(r['bytes'].get('vectors'))} |"
            )
        req = res.get("requirement")
        if req:
            status = "OK" if req["ok"] else "FAIL"
            detail = (
                f"efSearch={req['ef_search']}: recall@10 {req['recall@10']:.4f}, "
                f"{req['speedup_single_p50']:.1f}x faster "
                f"than exact per single query (p50), {req['speedup_batched']:.1f}x batched"
                if "speedup_single_p50" in req
                else req.get("reason", "")
            )
            lines += ["", f"**Requirement** ({req.get('rule', '')}): **{status}** - {detail}."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DISTILIR_DATA_DIR"))
    parser.add_argument("--cache-dir", default=None, help="embedding cache and scratch space (not the repo)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--synthetic-n", type=int, default=1_000_000)
    parser.add_argument("--synthetic-queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--single-queries", type=int, default=200, help="queries timed one by one (exact: a quarter)"
    )
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument(
        "--ef-search", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128, 256]
    )
    parser.add_argument(
        "--synthetic-nlist",
        type=int,
        default=1024,
        help="IVF lists for the synthetic set (0: DenseIndex's choice, 4 sqrt(n) = 4,000 at 1M, whose "
        "k-means on 256k points takes tens of minutes on 2 shared cores); scifact always uses "
        "DenseIndex's choice",
    )
    parser.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64])
    split = lambda s: s.split(",")  # noqa: E731
    parser.add_argument("--indexes", type=split, default=["flat", "hnsw", "ivfpq", "sq8"], help="for scifact")
    parser.add_argument(
        "--synthetic-indexes",
        type=split,
        default=["flat", "hnsw", "ivfpq"],
        help="for the synthetic set (sq8 is a brute-force scan of int8 codes: as slow as exact at 1M)",
    )
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--out", default=str(REPORTS), help="folder for ann.json and ann.md")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import faiss

    cache = cache_root(args.cache_dir)
    scratch = cache / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "cache_dir", "out")},
        "environment": {
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "datasets": [],
    }
    if not args.skip_scifact:
        if not args.data_dir:
            sys.exit("set DISTILIR_DATA_DIR (the folder of BEIR-format collections) or pass --data-dir")
        xb, xq, info = scifact_embeddings(Path(args.data_dir), cache, args.model)
        res = bench_dataset("scifact (all-MiniLM-L6-v2)", xb, xq, args, scratch, args.indexes)
        res["info"] = info
        report["datasets"].append(res)
    if not args.skip_synthetic:
        t0 = time.perf_counter()
        xb, xq = synthetic(args.synthetic_n, args.synthetic_queries, args.dim, args.clusters)
        info = {
            "generator": f"Gaussian mixture, {args.clusters} clusters in 48-d latent, "
            f"random lift to {args.dim}-d, "
            "noise 0.05, L2-normalised, seed 0",
            "generate_s": round(time.perf_counter() - t0, 1),
        }
        res = bench_dataset(
            f"synthetic {args.synthetic_n:,}",
            xb,
            xq,
            args,
            scratch,
            args.synthetic_indexes,
            nlist=args.synthetic_nlist or None,
        )
        res["info"] = info
        res["requirement"] = check_requirement(res)
        report["datasets"].append(res)
        del xb
    report["environment"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(scratch, ignore_errors=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ann.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (out / "ann.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    reqs = [r["requirement"] for r in report["datasets"] if r.get("requirement")]
    for req in reqs:
        print(("OK  " if req["ok"] else "FAIL") + f" {req.get('rule', req.get('reason'))}")
    return 0 if all(r["ok"] for r in reqs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
