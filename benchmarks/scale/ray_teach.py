"""Teacher scoring throughput: Ray actors vs one process, on the same pairs in the same run.

Pairs: the first ``--queries`` SciFact test queries x their top ``--depth`` BM25 candidates. Teacher:
the all-MiniLM-L6-v2 bi-encoder (``bi-encoder:all-MiniLM-L6-v2?max_length=128``; texts encoded once
per teacher replica, no disk cache). Conditions, each scoring every pair into a fresh store:

* **single, 1 thread** / **single, 2 threads**: ``TeacherStore.score`` in this process
  (``torch.set_num_threads``);
* **ray, N actors x 1 thread**: :func:`distilir.teachers.ray_scoring.score_with_ray` on a local Ray
  cluster already started (its start-up is reported apart), each actor with one torch thread.

Times are end to end (building the teacher / starting the actors and loading the model included, as
a user running ``distilir teach`` sees them) and pairs/s = pairs / time. Conditions alternate over
``--repeats`` rounds; the report gives medians and the ratio of the medians. All stores must hold
the same scores (checked; the benchmark fails otherwise).

Usage::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        nice -n 10 .venv/bin/python -m benchmarks.scale.ray_teach --queries 32 --depth 16 --workers 2

Writes ``benchmarks/reports/ray_teach.md`` (``--report``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._common import write_report

SPEC = "bi-encoder:all-MiniLM-L6-v2?max_length=128&num_threads={threads}"


def _pairs(queries: int, depth: int, data_dir: str | None, cache_dir: str):
    from distilir.candidates import FirstStageConfig, retrieve
    from distilir.data import load_dataset

    ds = load_dataset("scifact", data_dir=data_dir)
    texts = {q: x.text for q, x in ds.queries("test").items()}
    wanted = sorted(texts)[:queries]
    run = retrieve(
        ds, "test", FirstStageConfig(retriever="bm25"), k=depth, queries=wanted, cache_dir=cache_dir
    )
    candidates = {q: sorted(d, key=lambda x: (-d[x], x)) for q, d in run.items()}
    docs = {d: x.full_text for d, x in ds.corpus().items()}
    return texts, docs, candidates


def _single(path: Path, threads: int, queries, docs, candidates) -> float:
    import torch

    from distilir.teachers import TeacherStore, build_teacher

    torch.set_num_threads(threads)
    start = time.perf_counter()
    teacher = build_teacher(SPEC.format(threads=threads))
    with TeacherStore.open(path, teacher) as store:
        store.score(teacher, queries, docs, candidates, batch_queries=4, progress=False)
    return time.perf_counter() - start


def _ray(path: Path, workers: int, queries, docs, candidates) -> float:
    from distilir.teachers.ray_scoring import score_with_ray

    start = time.perf_counter()
    score_with_ray(path, SPEC.format(threads=1), queries, docs, candidates, workers=workers,
                   threads_per_worker=1, batch_queries=4, progress=False)  # fmt: skip
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("DISTILIR_DATA_DIR"))
    parser.add_argument("--report", default=str(Path(__file__).parents[1] / "reports" / "ray_teach.md"))
    args = parser.parse_args(argv)

    import ray

    from distilir.teachers import TeacherStore

    tmp = Path(tempfile.mkdtemp(prefix="ray-teach-"))
    queries, docs, candidates = _pairs(args.queries, args.depth, args.data_dir, str(tmp / "index"))
    n_pairs = sum(len(set(v)) for v in candidates.values())
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    names = ["single, 1 thread", "single, 2 threads", f"ray, {args.workers} actors x 1 thread"]
    times: dict[str, list[float]] = {n: [] for n in names}
    stores: list[Path] = []
    try:
        for r in range(args.repeats):
            for i, name in enumerate(names):
                path = tmp / f"store-{r}-{i}"
                if i == 2:
                    seconds = _ray(path, args.workers, queries, docs, candidates)
                else:
                    seconds = _single(path, i + 1, queries, docs, candidates)
                times[name].append(seconds)
                stores.append(path)
                print(f"round {r + 1}: {name}: {seconds:.1f} s, {n_pairs / seconds:.1f} pairs/s", flush=True)
    finally:
        ray.shutdown()
    runs = [TeacherStore.open(p).to_run() for p in stores]
    worst = max(abs(run[q][d] - runs[0][q][d]) for run in runs for q in runs[0] for d in runs[0][q])
    if any(run.keys() != runs[0].keys() for run in runs) or worst > 1e-5:
        raise SystemExit(f"the stores differ (max |diff| {worst}); the benchmark is void")

    med = {n: statistics.median(t) for n, t in times.items()}
    base = med[names[0]]
    lines = [
        "# Teacher scoring: Ray actors vs a single process",
        "",
        f"Generated by `benchmarks/scale/ray_teach.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
        f"python {platform.python_version()}, ray {ray.__version__}).",
        "",
        f"Teacher `{SPEC.format(threads='T')}`; {len(candidates)} SciFact test queries x top-{args.depth} "
        f"BM25 = {n_pairs} pairs; batches of 4 queries (one shard each); {args.repeats} round(s), "
        "median. Times are end to end: teacher built / actors started and models loaded, then "
        f"scoring and commits. Local Ray cluster start-up ({ray_start:.1f} s) is not included. All "
        f"stores hold the same scores (max |diff| {worst:.1e}).",
        "",
        "| condition | seconds | pairs/s | speed-up vs single, 1 thread |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        lines.append(f"| {n} | {med[n]:.1f} | {n_pairs / med[n]:.1f} | {base / med[n]:.2f}x |")
    lines += [
        "",
        "Reading: on this machine the two cores are shared with other jobs, so neither two threads nor "
        "two actors can reach 2x. Each Ray actor loads its own copy of the model and encodes the "
        "documents of its own batches (a document that is a candidate of queries in two actors' "
        "batches is encoded twice), while one process with two threads shares one model and one "
        "embedding cache. Ray pays off where one replica per GPU or per node multiplies the hardware, "
        "not on two shared cores.",
        "",
        f"Command: `nice -n 10 .venv/bin/python -m benchmarks.scale.ray_teach --queries {args.queries} "
        f"--depth {args.depth} --workers {args.workers} --repeats {args.repeats}`",
        "",
    ]
    write_report(args.report, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
