"""Training step time: DDP with 2 gloo processes (1 thread each) vs one process (1 and 2 threads),
at the same global batch.

Each condition runs distilir's ``Trainer`` on the same SciFact lists (teacher scores: a lexical
overlap score; timing does not depend on their values), student all-MiniLM-L6-v2 truncated to
``--max-length`` tokens, listwise KL + 0.1 InfoNCE (in-batch negatives gathered across processes
under DDP), ``--global-batch`` lists of ``--candidates`` documents per step:

* **single, 1 thread** / **single, 2 threads**: one process, batch = global batch;
* **DDP, 2 x 1 thread**: ``torchrun --nproc_per_node 2`` (gloo), batch = global batch / 2 per process.

Every condition runs in its own fresh process (the same launcher script), trains ``--warmup`` steps
untimed, then ``--steps`` timed steps; the time per step is the median over the timed steps (rank 0's
under DDP: all ranks wait for each other in the gradient all-reduce). Conditions alternate over
``--repeats`` rounds; the report gives medians of the per-round medians and ratios to one process
with one thread.

Usage::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        nice -n 10 .venv/bin/python -m benchmarks.scale.ddp_step --global-batch 16 --steps 6

Writes ``benchmarks/reports/ddp.md`` (``--report``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._common import write_report

WORKER = r"""
import json, re, sys, time
import numpy as np
import torch
from distilir.data import load_dataset
from distilir.training import Trainer, TrainConfig, TrainingList

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
ds = load_dataset("scifact", data_dir=args["data_dir"])
queries, qrels, corpus = ds.queries("train"), ds.qrels("train"), ds.corpus()
ids = sorted(corpus)
rng = np.random.default_rng(0)


def overlap(q, d):
    w = set(re.findall(r"\w+", q.lower()))
    return 10.0 * len(w & set(re.findall(r"\w+", d.lower()))) / max(1, len(w))


lists = []
for qid in sorted(queries)[: args["lists"]]:
    docs = list(dict.fromkeys(list(qrels[qid]) + [ids[i] for i in rng.choice(len(ids), 15, replace=False)]))
    texts = [corpus[d].full_text for d in docs]
    lists.append(TrainingList(qid, queries[qid].text, tuple(docs), tuple(texts),
                              tuple(overlap(queries[qid].text, t) for t in texts)))
config = TrainConfig.from_dict({
    "student": {"kind": "bi-encoder", "model": "all-MiniLM-L6-v2", "max_length": args["max_length"]},
    "losses": [{"name": "kl"}, {"name": "infonce", "weight": 0.1}],
    "data": {"candidates_per_query": args["candidates"]},
    "optim": {"batch_size": args["batch"], "steps": args["warmup"] + args["steps"], "lr": 2e-5},
    "output_dir": args["out"], "progress": False, "threads": args["threads"],
})
stamps = []
trainer = Trainer(config, lists=lists, teacher={"fingerprint": "lexical-overlap"},
                  callbacks=[lambda t, r: stamps.append(time.perf_counter())])
start = time.perf_counter()
trainer.train()
times = np.diff([start] + stamps)[args["warmup"]:]
if trainer.dist.is_main:
    print("RESULT " + json.dumps({"world": trainer.dist.world_size, "step_s": float(np.median(times)),
                                  "losses": trainer.history and [h["loss"] for h in trainer.history]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(script: Path, args: dict, ddp: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"]), "PYTHONWARNINGS": "ignore"}
    if ddp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), str(script), json.dumps(args)]  # fmt: skip
    else:
        cmd = [sys.executable, str(script), json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{proc.stderr[-3000:]}")
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(lines[-1][7:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("DISTILIR_DATA_DIR"))
    parser.add_argument("--report", default=str(Path(__file__).parents[1] / "reports" / "ddp.md"))
    args = parser.parse_args(argv)
    if args.global_batch % 2:
        raise SystemExit(f"--global-batch must be even (split over 2 processes), got {args.global_batch}")

    tmp = Path(tempfile.mkdtemp(prefix="ddp-step-"))
    script = tmp / "worker.py"
    script.write_text(WORKER)
    common = {"data_dir": args.data_dir, "lists": 64, "max_length": args.max_length,
              "candidates": args.candidates, "steps": args.steps, "warmup": args.warmup}  # fmt: skip
    conditions = [
        ("single, 1 thread", {"threads": 1, "batch": args.global_batch}, False),
        ("single, 2 threads", {"threads": 2, "batch": args.global_batch}, False),
        ("DDP, 2 processes x 1 thread (gloo)", {"threads": 1, "batch": args.global_batch // 2}, True),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in conditions}
    first_losses: dict[str, float] = {}
    for r in range(args.repeats):
        for i, (name, extra, ddp) in enumerate(conditions):
            res = _run(script, {**common, **extra, "out": str(tmp / f"run-{r}-{i}")}, ddp)
            times[name].append(res["step_s"])
            first_losses[name] = res["losses"][0]
            print(f"round {r + 1}: {name}: {res['step_s']:.2f} s/step", flush=True)

    load = os.getloadavg()[0]
    med = {n: statistics.median(t) for n, t in times.items()}
    base = med[conditions[0][0]]
    lines = [
        "# Distributed training step: DDP (2 gloo processes) vs one process",
        "",
        f"Generated by `benchmarks/scale/ddp_step.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
        f"python {platform.python_version()}; 1-minute load average at the end: {load:.1f}).",
        "",
        f"all-MiniLM-L6-v2 student, max_length {args.max_length}, KL + 0.1 InfoNCE, global batch "
        f"{args.global_batch} lists x {args.candidates} documents; {args.steps} timed steps after "
        f"{args.warmup} untimed, median per run, median over {args.repeats} round(s). First-step loss of "
        "each condition (same global batch, so it must agree; dropout makes it differ slightly): "
        + ", ".join(f"{n}: {v:.4f}" for n, v in first_losses.items())
        + ".",
        "",
        "| condition | s / step | lists / s | speed-up vs single, 1 thread |",
        "|---|---:|---:|---:|",
    ]
    for name, _, _ in conditions:
        lines.append(
            f"| {name} | {med[name]:.2f} | {args.global_batch / med[name]:.1f} | {base / med[name]:.2f}x |"
        )
    lines += [
        "",
        "Command: `nice -n 10 .venv/bin/python -m benchmarks.scale.ddp_step "
        f"--global-batch {args.global_batch} --candidates {args.candidates} "
        f"--max-length {args.max_length} --steps {args.steps} --repeats {args.repeats}`",
        "",
    ]
    write_report(args.report, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
