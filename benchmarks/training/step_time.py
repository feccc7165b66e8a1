"""Training step time: distilir's trainer vs a plain sentence-transformers step, on the same batch.

Both sides do one full optimiser step on the same 32 (query, positive, negative) triplets of SciFact
train, all-MiniLM-L6-v2 truncated to 128 tokens, Margin-MSE, AdamW, gradient clipping at 1.0:

* **plain sentence-transformers**: ``SentenceTransformer`` + ``sentence_transformers``'
  ``MarginMSELoss``: ``preprocess`` the three columns, ``loss(features, margins)``, ``backward``,
  ``clip_grad_norm_``, ``AdamW.step``. The least a training step can do.
* **distilir**: ``Trainer._train_step()`` with a ``BiEncoderStudent`` and distilir's
  ``MarginMSELoss`` over ``[32, 2]`` score tensors: sampler, candidate selection, collation, the
  student's forward (queries and the 64 documents encoded once, in-batch matrix built), the
  ``WeightedSum`` loss, backward, clipping, AdamW and the LR schedule.

Before timing, both losses are computed in eval mode (no dropout) on the batch; they must agree (same
model, same margins), so the two sides do the same computation. Steps alternate (ours, theirs, ours,
...) so that load from other processes affects both alike; the report gives medians and the median of
the per-pair ratios. The teacher margins are from a lexical overlap score (timing does not depend on
their values).

Usage::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        .venv/bin/python -m benchmarks.training.step_time --repeats 5 --threads 2

Writes ``benchmarks/reports/training_step.md`` (``--report``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPORT = Path(__file__).resolve().parents[1] / "reports" / "training_step.md"


def _lexical(query: str, doc: str) -> float:
    words = set(re.findall(r"\w+", query.lower()))
    return 10.0 * len(words & set(re.findall(r"\w+", doc.lower()))) / max(1, len(words))


def make_triplets(n: int, seed: int, data_dir: str | None):
    """n (query, positive, negative, teacher_pos, teacher_neg) from SciFact train: a judged document as
    positive, a seeded random document as negative."""
    from distilir.data import load_dataset

    ds = load_dataset("scifact", data_dir=data_dir)
    queries, qrels, corpus = ds.queries("train"), ds.qrels("train"), ds.corpus()
    ids = sorted(corpus)
    rng = np.random.default_rng(seed)
    out = []
    for qid in sorted(queries)[:n]:
        q = queries[qid].text
        pos = corpus[sorted(qrels[qid])[0]].full_text
        neg = corpus[ids[int(rng.integers(len(ids)))]].full_text
        out.append((q, pos, neg, _lexical(q, pos), _lexical(q, neg)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed steps per side (after 1 warm-up step each)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--report", default=str(REPORT))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from distilir_index.models import resolve_model as resolve_student_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss as STMarginMSE

    from distilir.losses import MarginMSELoss
    from distilir.training import Trainer, TrainingList, load_config
    from distilir.training.data import collate, select_candidates

    triplets = make_triplets(args.batch, seed=0, data_dir=args.data_dir)
    lists = [
        TrainingList(f"q{i}", q, ("p", "n"), (p, n), (sp, sn)) for i, (q, p, n, sp, sn) in enumerate(triplets)
    ]
    path = resolve_student_model(args.model)

    # ---- plain sentence-transformers
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    st_loss = STMarginMSE(st)
    st_opt = torch.optim.AdamW(st.parameters(), lr=2e-5, weight_decay=0.01)
    queries = [t[0] for t in triplets]
    positives = [t[1] for t in triplets]
    negatives = [t[2] for t in triplets]
    margins = torch.tensor([t[3] - t[4] for t in triplets])

    def st_step(train: bool = True) -> float:
        st.train(train)
        features = [st.preprocess(col) for col in (queries, positives, negatives)]
        if not train:
            with torch.no_grad():
                return float(st_loss(features, margins))
        st_opt.zero_grad(set_to_none=True)
        loss = st_loss(features, margins)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        st_opt.step()
        return float(loss.detach())

    # ---- distilir
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            None,
            {
                "student.model": args.model,
                "student.max_length": args.max_length,
                "losses": [{"name": "margin_mse"}],
                "data.candidates_per_query": 2,
                "data.negatives": "top",
                "optim.batch_size": args.batch,
                "optim.steps": 1000,
                "optim.lr": 2e-5,
                "optim.warmup_steps": 0,
                "output_dir": tmp,
                "progress": False,
            },
        )
        trainer = Trainer(config, lists=lists)

        # the two sides compute the same loss (eval mode: no dropout)
        batch = collate([(x, select_candidates(x, 2, negatives="top")) for x in lists], 2)
        trainer.student.eval()
        with torch.no_grad():
            out = trainer.student.forward_scores(batch.queries, batch.docs, batch.mask)
            ours_eval = float(MarginMSELoss()(out.scores, batch.teacher_scores, out.mask))
        st_eval = st_step(train=False)
        trainer.student.train()

        trainer._train_step(), st_step()  # warm-up
        ours, theirs = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trainer._train_step()
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            st_step()
            theirs.append(time.perf_counter() - t0)

    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    load = os.getloadavg()
    result = {
        "ours_median_s": statistics.median(ours),
        "st_median_s": statistics.median(theirs),
        "ratio_median": statistics.median(ratios),
        "ratio_of_medians": statistics.median(ours) / statistics.median(theirs),
    }
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def fmt(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    lines = [
        "# Training step time: distilir trainer vs plain sentence-transformers",
        "",
        f"Generated by `benchmarks/training/step_time.py` on {now}.",
        "",
        f"- batch: {args.batch} (query, positive, negative) triplets from SciFact train, model {args.model}, "
        f"max_length {args.max_length}, Margin-MSE, AdamW lr 2e-5, clip 1.0, CPU",
        f"- torch threads: {torch.get_num_threads()}, torch {torch.__version__}, "
        f"python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(a shared machine: absolute times vary, the alternating ratio is the figure to read)",
        f"- same computation: eval-mode loss on the batch, distilir {ours_eval:.6f} vs "
        f"sentence-transformers {st_eval:.6f}",
        f"- {args.repeats} timed steps per side after one warm-up step each, alternating",
        "",
        "| | median step (s) | all steps (s) |",
        "|---|---:|---|",
        f"| plain sentence-transformers (MarginMSELoss) | {result['st_median_s']:.3f} | {fmt(theirs)} |",
        f"| distilir Trainer step (BiEncoderStudent) | {result['ours_median_s']:.3f} | {fmt(ours)} |",
        "",
        f"**Overhead ratio** (distilir / sentence-transformers): median of per-pair ratios "
        f"**{result['ratio_median']:.3f}**, ratio of medians {result['ratio_of_medians']:.3f}.",
        "",
    ]
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    if abs(ours_eval - st_eval) > 1e-4 * max(1.0, abs(st_eval)):
        print(
            f"WARNING: the eval-mode losses differ ({ours_eval} vs {st_eval}); "
            "the two steps do not compute the same thing"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
