"""The REST service under concurrent load on loopback, beside in-process ``Retriever.search``.

What is measured, per index (dense: all-MiniLM-L6-v2 + FAISS flat over the SciFact corpus; BM25) and
per micro-batching setting (``batch_wait_ms`` 0 = off, and on):

* HTTP: ``distilir-index serve`` in its own process on 127.0.0.1; an asyncio client (httpx) keeps
  1, 4 and 16 requests in flight (closed loop) over the test queries of the split, ``POST /v1/search``
  with ``k`` = 10. Throughput (requests/s) and client-side latency p50/p99 (query encoding, search,
  JSON and HTTP included); the mean micro-batch size, from the server's ``/metrics``.
* In process, same run and machine: ``Retriever.search`` one query at a time (latency p50/p99 and
  queries/s), and ``search_many`` over all queries in one call (queries/s).
* Checks (``--check``): every request answered 200, and the served hits equal the in-process hits
  for a sample of queries (``conditions.yaml``).

Request counts are bounded (``conditions.yaml``), the server is stopped at the end, and nothing but
127.0.0.1 is contacted. The client shares the machine's cores with the server, as any loopback
benchmark does; the load average at the start is recorded in the report.

Usage::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
      .venv/bin/python -m benchmarks.service.run --check

Indexes are cached in ``--index-dir`` (default ``$DISTILIR_CACHE/bench/service-<dataset>``) and
reused while their corpus fingerprint matches. Writes ``benchmarks/reports/service.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPORT = HERE.parent / "reports" / "service.md"
CONDITIONS = HERE / "conditions.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- indexes ---------------------------------------------------------------------------------------


def corpus_fingerprint(docs: list[tuple[str, str, dict]]) -> str:
    from distilir_index.base import CorpusFingerprint

    fp = CorpusFingerprint()
    for doc_id, text, _ in docs:
        fp.update(doc_id, text)
    return fp.hexdigest()


def ensure_index(
    name: str, spec: dict[str, Any], docs, root: Path, doc_vectors: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Build the index unless a cached one over the same corpus exists; returns (path, build info).

    ``doc_vectors``: a ``.npy`` of the documents' vectors, in corpus order, made by the same encoder
    over the same texts (``title + " " + text``), e.g. the SciFact cache of ``benchmarks/ann``; the
    dense index then stores them instead of encoding the corpus again."""
    from distilir_index.base import ManifestError, read_manifest

    path = root / name
    fingerprint = corpus_fingerprint(docs)
    try:
        manifest = read_manifest(path, kind=spec["kind"])
        if (manifest.get("corpus") or {}).get("fingerprint") == fingerprint:
            return path, {"built": False}
    except ManifestError:
        pass
    ids, texts, metas = [d[0] for d in docs], [d[1] for d in docs], [d[2] for d in docs]
    t0 = time.perf_counter()
    if spec["kind"] == "dense":
        from distilir_index.dense import DenseIndex
        from distilir_index.encoders import DenseEncoder

        index: Any = DenseIndex(
            DenseEncoder(spec["model"]), index=spec.get("factory", "flat"), show_progress=True
        )
    elif spec["kind"] == "bm25":
        from distilir_index.bm25 import BM25Index

        index = BM25Index(show_progress=True)
    else:
        raise SystemExit(f"index kind {spec['kind']!r} is not part of this benchmark")
    vectors = None
    if spec["kind"] == "dense" and doc_vectors is not None:
        import numpy as np

        vectors = np.load(doc_vectors)
        if vectors.shape != (len(ids), index.dimension):
            raise SystemExit(
                f"{doc_vectors} holds {vectors.shape} vectors; expected ({len(ids)}, {index.dimension})"
            )
    extra = {"vectors": vectors} if vectors is not None else {}
    index.add(ids, texts, metadata=metas, **extra)
    index.save(path)
    info = {"built": True, "build_s": time.perf_counter() - t0}
    if vectors is not None:
        info["vectors_from"] = str(doc_vectors)
    return path, info


# -- in process ------------------------------------------------------------------------------------


def in_process(
    path: Path,
    queries: list[str],
    k: int,
    n_single: int,
    levels: list[int],
    encoder_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """One query at a time (latency), ``search_many`` over all queries, and ``clients`` threads in a
    closed loop calling ``Retriever.search`` (the in-process counterpart of each HTTP level)."""
    from concurrent.futures import ThreadPoolExecutor

    from distilir_index.retriever import Retriever

    retriever = Retriever.load(path, encoder_options=encoder_options or None)
    retriever.search(queries[0], k=k)  # warm-up
    lat = []
    for q in queries[:n_single]:
        t0 = time.perf_counter()
        retriever.search(q, k=k)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    retriever.search_many(queries, k=k)
    batched = time.perf_counter() - t0
    concurrent = {}
    for clients in levels:
        counter = iter(range(n_single))

        def worker(counter=counter) -> None:
            for i in counter:  # next() on a shared iterator is atomic under the GIL
                retriever.search(queries[i % len(queries)], k=k)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for f in [pool.submit(worker) for _ in range(clients)]:
                f.result()
        concurrent[clients] = n_single / (time.perf_counter() - t0)
    return {
        "single_qps": len(lat) / sum(lat),
        "p50_ms": 1000 * percentile(lat, 0.5),
        "p99_ms": 1000 * percentile(lat, 0.99),
        "batched_qps": len(queries) / batched,
        "concurrent_qps": concurrent,
    }, retriever


# -- over HTTP -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``distilir-index serve`` in a child process on 127.0.0.1."""

    def __init__(
        self,
        indexes: dict[str, Path],
        batch_wait_ms: float,
        max_k: int,
        torch_threads: int | None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "distilir_index.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--batch-wait-ms",
            str(batch_wait_ms),
            "--max-k",
            str(max_k),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if torch_threads is not None:
            args += ["--torch-threads", str(torch_threads)]
        args += extra_args or []
        for name, path in indexes.items():
            args += ["--index", f"{name}={path}"]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        # the server's log goes to a file: an undrained pipe fills up and blocks the server's logging
        self.log = tempfile.NamedTemporaryFile(prefix="distilir-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("the server exited during startup:\n" + self.log_text())
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"the server was not ready within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's micro-batch size histogram."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for s in family.samples:
            if s.name == "distilir_search_batch_size_sum":
                total = s.value
            elif s.name == "distilir_search_batch_size_count":
                count = s.value
    return total, count


async def load(
    url: str, index: str, queries: list[str], k: int, clients: int, n_requests: int, warmup: int
) -> dict[str, float]:
    """Closed loop: ``clients`` workers, each sending its next request when the last one answered."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        for q in queries[:warmup]:
            (await client.post("/v1/search", json={"query": q, "k": k, "index": index})).raise_for_status()
        latencies: list[float] = []
        failures = 0
        counter = iter(range(n_requests))

        async def worker() -> None:
            nonlocal failures
            for i in counter:
                q = queries[i % len(queries)]
                t0 = time.perf_counter()
                r = await client.post("/v1/search", json={"query": q, "k": k, "index": index})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "failures": failures,
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


def identical_hits(url: str, index: str, retriever, queries: list[str], k: int) -> float:
    import httpx

    same = 0
    for q in queries:
        served = httpx.post(f"{url}/v1/search", json={"query": q, "k": k, "index": index}, timeout=60).json()
        same += [h["id"] for h in served["hits"]] == [h.id for h in retriever.search(q, k=k)]
    return same / len(queries)


# -- report ----------------------------------------------------------------------------------------


def write_report(path: Path, result: dict[str, Any]) -> None:
    lines = [
        "# REST service on loopback vs in-process search",
        "",
        f"Generated by `benchmarks/service/run.py` on {result['when']} ({result['machine']}; "
        f"load average at start {result['loadavg']}). Dataset: {result['dataset']} "
        f"({result['documents']} documents, {result['queries']} test queries), k = {result['k']}, "
        f"torch threads: {result['torch_threads']} (server and in-process).",
        "",
        "HTTP figures are client-side (query encoding, search, JSON and HTTP included) with the client "
        "on the same machine; a closed loop keeps `clients` requests in flight. `batch` is the "
        "micro-batching window (`--batch-wait-ms`; 0 = off), `mean batch` the queries per index call "
        "the server reports in `/metrics`. The server batches only kinds that encode queries "
        "(setting `batch_kinds`), so BM25 appears with batching off only. The query encoder of the "
        "dense index runs on the default backend (`auto`: ONNX Runtime when installed, one thread per "
        "request); `int8` is `--query-quantization int8`. The last column divides the HTTP "
        "throughput by the in-process throughput with as many threads calling `Retriever.search`. "
        "The batching window applies only while every batch slot is busy (a lone request starts at "
        "once). In a closed loop the mean latency is clients / throughput (Little's law): at 16 "
        "clients a p99 under 100 ms needs well over 160 req/s.",
        "",
        "| index (query encoder) | setting | clients | requests | failures | req/s | p50 ms | p99 ms "
        "| mean batch | REST / in-process req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["http"]:
        lines.append(
            f"| {row['index']} | HTTP, batch {row['batch_wait_ms']:g} ms | {row['clients']} | "
            f"{row['requests']} | "
            f"{row['failures']} | {row['rps']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['mean_batch']:.2f} | {row['vs_in_process']:.0%} |"
        )
    for name, row in result["in_process"].items():
        lines.append(
            f"| {name} | in-process `Retriever.search` | 1 | {row['n_single']} | 0 | "
            f"{row['single_qps']:.1f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | 1 | - |"
        )
        for clients, qps in row["concurrent_qps"].items():
            lines.append(
                f"| {name} | in-process, {clients} threads calling `Retriever.search` | {clients} | "
                f"{row['n_single']} | 0 | {qps:.1f} | - | - | 1 | - |"
            )
        lines.append(
            f"| {name} | in-process `search_many` (all queries) | - | {result['queries']} | 0 | "
            f"{row['batched_qps']:.1f} | - | - | {result['queries']} | - |"
        )
    builds = []
    for n, b in result["builds"].items():
        if not b.get("built"):
            builds.append(f"{n}: cached")
        elif b.get("vectors_from"):
            builds.append(
                f"{n}: {b['build_s']:.1f} s from precomputed vectors ({Path(b['vectors_from']).name})"
            )
        else:
            builds.append(f"{n}: {b['build_s']:.1f} s")
    lines += ["", "Build (when not cached): " + ", ".join(builds) + ".", "", "Checks:", ""]
    for check in result["checks"]:
        lines.append(
            f"- {'OK' if check['ok'] else 'FAIL'} {check['what']}: {check['value']:.3f} "
            f"(minimum {check['minimum']})"
        )
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.partial")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DISTILIR_DATA_DIR"))
    parser.add_argument("--conditions", type=Path, default=CONDITIONS)
    parser.add_argument("--index-dir", type=Path)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--check", action="store_true", help="exit 1 unless every check passes")
    parser.add_argument("--only", choices=["dense", "bm25"], help="benchmark one index only")
    parser.add_argument("--max-docs", type=int, help="index only the first N documents (smoke runs)")
    parser.add_argument(
        "--doc-vectors",
        type=Path,
        help="precomputed document vectors (.npy, corpus order, same encoder and texts) for the dense index",
    )
    args = parser.parse_args(argv)
    if not args.data_dir:
        raise SystemExit("set DISTILIR_DATA_DIR (the folder of BEIR-format collections) or pass --data-dir")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cond = yaml.safe_load(args.conditions.read_text(encoding="utf-8"))
    folder = Path(args.data_dir) / cond["dataset"]
    from distilir_index.cli import iter_corpus
    from distilir_index.models import cache_dir

    from distilir.data import load_dataset

    docs = list(iter_corpus(folder, limit=args.max_docs))
    queries = [q.text for q in load_dataset(folder).queries(cond["split"]).values()]
    k = int(cond["k"])
    root = args.index_dir or cache_dir() / "bench" / f"service-{cond['dataset']}"
    specs = {n: s for n, s in cond["indexes"].items() if args.only in (None, n)}
    result: dict[str, Any] = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "loadavg": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "dataset": cond["dataset"],
        "documents": len(docs),
        "queries": len(queries),
        "k": k,
        "builds": {},
        "in_process": {},
        "http": [],
        "checks": [],
    }
    paths = {}
    for name, spec in specs.items():
        print(f"[{name}] index in {root / name}", flush=True)
        paths[name], result["builds"][name] = ensure_index(name, spec, docs, root, args.doc_vectors)
    from distilir_index.service.settings import ServiceSettings

    batched_kinds = set(ServiceSettings.model_fields["batch_kinds"].get_default(call_default_factory=True))
    torch_threads = cond.get("torch_threads")
    if torch_threads is not None:  # the same setting for the in-process figures and the server
        import torch

        torch.set_num_threads(int(torch_threads))
    result["torch_threads"] = torch_threads if torch_threads is not None else "default"
    # query-encoder variants (dense indexes only): {label: {"query_quantization": ...}}
    variants = cond.get("query_encoders") or {"default": {}}
    flags = {"query_quantization": "--query-quantization", "backend": "--encoder-backend"}
    for v_i, (variant, options) in enumerate(variants.items()):
        names = [n for n in specs if specs[n]["kind"] == "dense" or v_i == 0]
        retrievers = {}
        for name in names:
            opts = dict(options) if specs[name]["kind"] == "dense" else {}
            n_single = min(len(queries), int(cond["requests"][name]))
            stats, retrievers[name] = in_process(paths[name], queries, k, n_single, cond["levels"], opts)
            result["in_process"][f"{name} ({variant})"] = {**stats, "n_single": n_single}
            print(f"[{name} {variant}] in-process: {stats}", flush=True)
        extra = [a for key, value in options.items() for a in (flags[key], str(value))]
        for wait in cond["batch_wait_ms"]:
            server = Server(
                paths, batch_wait_ms=wait, max_k=max(k, 100), torch_threads=torch_threads, extra_args=extra
            )
            try:
                server.wait_ready()
                for name in names:
                    if wait > 0 and specs[name]["kind"] not in batched_kinds:
                        continue  # the server does not batch this kind: the same as the batch-0 run
                    label = f"{name} ({variant})"
                    for clients in cond["levels"]:
                        before = batch_stats(server.url)
                        row = asyncio.run(
                            load(
                                server.url,
                                name,
                                queries,
                                k,
                                clients,
                                int(cond["requests"][name]),
                                int(cond["warmup"]),
                            )
                        )
                        after = batch_stats(server.url)
                        batches = after[1] - before[1]
                        in_proc = result["in_process"][label]["concurrent_qps"].get(clients)
                        row.update(
                            index=label,
                            clients=clients,
                            batch_wait_ms=wait,
                            mean_batch=(after[0] - before[0]) / batches if batches else 1.0,
                            vs_in_process=row["rps"] / in_proc if in_proc else float("nan"),
                        )
                        result["http"].append(row)
                        print(f"[{label}] HTTP batch={wait} ms clients={clients}: {row}", flush=True)
                        ok_rate = (row["requests"] - row["failures"]) / row["requests"]
                        result["checks"].append(
                            {
                                "what": f"{label} success rate, batch {wait} ms, {clients} clients",
                                "value": ok_rate,
                                "minimum": cond["checks"]["min_success_rate"],
                                "ok": ok_rate >= cond["checks"]["min_success_rate"],
                            }
                        )
                    same = identical_hits(server.url, name, retrievers[name], queries[:20], k)
                    result["checks"].append(
                        {
                            "what": f"{label} served hits == in-process hits, batch {wait} ms (20 queries)",
                            "value": same,
                            "minimum": cond["checks"]["min_identical_hits"],
                            "ok": same >= cond["checks"]["min_identical_hits"],
                        }
                    )
            finally:
                server.stop()
    write_report(args.report, result)
    print(f"report written to {args.report}")
    failed = [c for c in result["checks"] if not c["ok"]]
    for c in result["checks"]:
        print(f"{'OK' if c['ok'] else 'FAIL'} {c['what']}: {c['value']:.3f}")
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
