"""Soak: the service at saturation for minutes, with searches, embeddings and reloads mixed.

``distilir-index serve`` runs in its own process on 127.0.0.1 over the indexes of the service benchmark
(``python -m benchmarks.service.run`` builds them); ``--clients`` closed-loop threads send, each in
turn, BM25 searches, dense searches and embedding requests (weights ``--mix``), while one more thread
reloads an index every ``--reload-every`` seconds. Every few seconds the server's resident memory
(``/proc/<pid>/status``) is sampled. The report (``benchmarks/reports/service_soak.md``) gives the
answers by status (anything but 200 is an error), p50/p99 per minute, and the slope of RSS after the
warm-up (least squares, MB per minute). Loopback only, bounded by ``--duration``.

    python -m benchmarks.service.soak --index-dir <service benchmark indexes> --duration 600 --check
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.service.run import Server, percentile

REPORT = Path(__file__).resolve().parents[1] / "reports" / "service_soak.md"
QUERIES = [
    "what lowers blood pressure?",
    "do statins reduce heart attacks",
    "vitamin D and bone density",
    "gene expression in tumour cells",
    "antibiotic resistance in hospitals",
    "sleep and memory consolidation",
]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True, help="folder with bm25/ and dense/")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds at saturation")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run left out of the slope")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--mix", default="bm25=5,dense=3,embeddings=2")
    parser.add_argument("--reload-every", type=float, default=2.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--check", action="store_true", help="exit 1 on any error answer")
    args = parser.parse_args(argv)
    import httpx

    indexes = {n: args.index_dir / n for n in ("bm25", "dense")}
    missing = [str(p) for p in indexes.values() if not (p / "manifest.json").is_file()]
    if missing:
        raise SystemExit(
            f"no index at {missing}: expected the service benchmark's indexes "
            "(python -m benchmarks.service.run --index-dir DIR builds them)"
        )
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    server = Server(indexes, batch_wait_ms=2.0, max_k=100, torch_threads=1)
    server.wait_ready()
    pid = server.proc.pid
    stop = threading.Event()
    lock = threading.Lock()
    records: list[tuple[float, str, int, float]] = []  # (t, kind, status, ms)
    rss: list[tuple[float, float]] = []
    failures: Counter[str] = Counter()  # transport errors by exception (status -1 below)
    start = time.monotonic()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        kinds, weights = list(mix), list(mix.values())
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while not stop.is_set():
                kind = rng.choices(kinds, weights)[0]
                q = rng.choice(QUERIES)
                t0 = time.perf_counter()
                try:
                    if kind == "embeddings":
                        r = c.post("/v1/embeddings", json={"input": [q, q[::-1], q.upper(), q + " ?"]})
                    else:
                        r = c.post("/v1/search", json={"query": q, "k": 10, "index": kind})
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = -1
                    with lock:
                        failures[type(exc).__name__] += 1
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    records.append((time.monotonic() - start, kind, status, ms))

    def reloader() -> None:
        names = list(indexes)
        i = 0
        with httpx.Client(base_url=server.url, timeout=120) as c:
            while not stop.wait(args.reload_every):
                t0 = time.perf_counter()
                try:
                    status = c.post(f"/v1/indexes/{names[i % len(names)]}/reload").status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    records.append(
                        (time.monotonic() - start, "reload", status, (time.perf_counter() - t0) * 1000)
                    )
                i += 1

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in range(args.clients)]
    threads.append(threading.Thread(target=reloader, daemon=True))
    try:
        for t in threads:
            t.start()
        while (elapsed := time.monotonic() - start) < args.duration:
            rss.append((elapsed, rss_mb(pid)))
            print(f"[soak] {elapsed:6.0f} s  {len(records)} answers  RSS {rss[-1][1]:.0f} MB", flush=True)
            time.sleep(args.sample_every)
        rss.append((time.monotonic() - start, rss_mb(pid)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        server.stop()

    statuses = Counter((kind, status) for _, kind, status, _ in records)
    errors = sum(n for (_, status), n in statuses.items() if status != 200)
    warm = [(t, m) for t, m in rss if t >= args.warmup * args.duration]
    slope = float(np.polyfit([t / 60 for t, _ in warm], [m for _, m in warm], 1)[0]) if len(warm) > 2 else 0.0
    minutes = int(args.duration // 60) or 1
    per_minute = []
    for m in range(minutes):
        ms = [x for t, kind, s, x in records if m * 60 <= t < (m + 1) * 60 and kind != "reload" and s == 200]
        if ms:
            per_minute.append((m + 1, len(ms) / 60, percentile(ms, 0.5), percentile(ms, 0.99)))
    lines = [
        "# Service soak",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; {os.cpu_count()} CPUs; "
        f"`python -m benchmarks.service.soak --duration {args.duration:g} --clients {args.clients} "
        f"--mix {args.mix} --reload-every {args.reload_every:g}`; server and clients on the same "
        "machine (loopback), server torch threads 1, micro-batching 2 ms.",
        "",
        f"- answers: {len(records)}; not 200: **{errors}**"
        + (f" (transport errors: {dict(failures)})" if failures else ""),
        f"- RSS: {rss[0][1]:.0f} MB at start, {rss[-1][1]:.0f} MB at the end, "
        f"max {max(m for _, m in rss):.0f} MB; "
        f"slope after {args.warmup:.0%} warm-up: **{slope:+.2f} MB/min**",
        "",
        "| route | status | answers |",
        "|---|---:|---:|",
        *[f"| {kind} | {status} | {n} |" for (kind, status), n in sorted(statuses.items())],
        "",
        "| minute | req/s (searches + embeddings) | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|",
        *[f"| {m} | {rate:.0f} | {p50:.1f} | {p99:.1f} |" for m, rate, p50, p99 in per_minute],
        "",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.report.with_suffix(".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(args.report)
    print("\n".join(lines))
    if errors:
        print("[soak] server log (last 3,000 characters):\n" + server.log_text()[-3000:])
    return 1 if args.check and errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
