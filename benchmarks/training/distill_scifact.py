"""Full distillation runs (for the closing note, not for CI): teacher store -> students -> test scores.

Runs (``--runs``, comma separated; each is resumable and its result cached in ``<work-dir>/results.json``):

* ``minilm-margin_mse``, ``minilm-kl``, ``minilm-kl_infonce``, ``minilm-infonce_kl``: all-MiniLM-L6-v2
  distilled on SciFact train with Margin-MSE, listwise KL, KL + 0.1 InfoNCE (in-batch negatives) and
  InfoNCE + 0.1 KL; evaluated on SciFact
  test by exact dense retrieval over the full corpus (FAISS ``IndexFlatIP``), nDCG@10.
* ``arguana-margin_mse``, ``arguana-kl``, ``arguana-kl_infonce``, ``arguana-infonce_kl``: the same
  losses on ArguAna, whose only split is ``test``: a seeded half of its queries is distilled, the
  other half evaluated (self-hits dropped, BEIR's rule). Distillation needs no qrels.
* ``splade-kl``: splade-tiny distilled with listwise KL + FLOPS; exact sparse retrieval on SciFact
  test, nDCG@10 and the mean number of non-zero terms per document and per query.
* ``teacher``: the teacher itself reranking BM25's top ``--depth`` of SciFact test (the lists it
  scores in training come from the same first stage), nDCG@10: how good the target is.
* ``cross-kl``: a cross-encoder built from all-MiniLM-L6-v2 (new, random head) distilled with
  listwise KL; reranks BM25's top ``--rerank-depth`` of SciFact test, nDCG@10.

The teacher store (BM25 top ``--depth`` of the training queries scored by ``--teacher``, default
``distilir.teachers.factory.DEFAULT_OFFLINE_TEACHER``) is built once per collection under
``<work-dir>/stores`` and reused (the store itself resumes an interrupted scoring run). Base models
and BM25 are measured with the same evaluation code, beside the reference figures (SciFact test
nDCG@10: all-MiniLM-L6-v2 0.645, BM25 0.679).

Usage (one process at a time on a shared machine; everything is configurable because 2 CPU cores
make the full set take hours)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILIR_DATA_DIR=../shared/data \\
        .venv/bin/python -m benchmarks.training.distill_scifact --runs minilm-kl --steps 100 --depth 20

Writes ``benchmarks/reports/training_distill.md`` after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPORT = Path(__file__).resolve().parents[1] / "reports" / "training_distill.md"
RUNS = (
    "teacher",
    "minilm-margin_mse",
    "minilm-kl",
    "minilm-kl_infonce",
    "minilm-infonce_kl",
    "arguana-margin_mse",
    "arguana-kl",
    "arguana-kl_infonce",
    "arguana-infonce_kl",
    "splade-kl",
    "cross-kl",
)
REFERENCE = {"all-MiniLM-L6-v2 (reference)": 0.645, "BM25 (reference)": 0.679}


# ----------------------------------------------------------------------------- data and teacher


def split_queries(ds, split: str, half: str | None, seed: int) -> list[str]:
    """Judged query ids of ``split``; with ``half`` = "distil" / "eval", a seeded half of them."""
    qrels = ds.qrels(split)
    queries = ds.queries(split)
    qids = sorted(q for q in qrels if q in queries)
    if half is None:
        return qids
    perm = np.random.default_rng([seed, 101]).permutation(len(qids))
    cut = len(qids) // 2
    chosen = perm[:cut] if half == "distil" else perm[cut:]
    return sorted(qids[i] for i in chosen)


def build_store(ds, split: str, qids: list[str], args, work: Path) -> Path:
    """The first stage's (``--first-stage``, BM25 by default) top ``args.depth`` of ``qids`` scored by the
    teacher into a TeacherStore (resumable)."""
    from distilir.candidates import FirstStageConfig, retrieve
    from distilir.conventions import conventions_for
    from distilir.teachers.factory import build_teacher
    from distilir.teachers.store import TeacherStore

    corpus = ds.corpus()
    teacher = build_teacher(args.teacher, corpus={d.id: d.full_text for d in corpus.values()})
    first = args.first_stage
    path = work / "stores" / f"{ds.name}-{split}-{len(qids)}q-{first}top{args.depth}-{teacher.fingerprint}"
    drop_self = conventions_for(ds.name).ignore_identical_ids
    config = FirstStageConfig(retriever=first, model=None if first == "bm25" else "all-MiniLM-L6-v2")
    run = retrieve(
        ds,
        split,
        config,
        k=args.depth,
        queries=qids,
        drop_self=drop_self,
        cache_dir=work / "indexes",
    )
    candidates = {
        q: [d for d, _ in sorted(run[q].items(), key=lambda x: (-x[1], x[0]))] for q in qids if run.get(q)
    }
    source = {
        "dataset": ds.name,
        "split": split,
        "retriever": first if first == "bm25" else f"{first} (all-MiniLM-L6-v2)",
        "depth": args.depth,
        "queries": len(qids),
    }
    t0 = time.perf_counter()
    with TeacherStore.open(path, teacher, candidate_source=source) as store:
        stats = store.score(teacher, ds.queries(split), corpus, candidates, batch_queries=16, progress=True)
    seconds = time.perf_counter() - t0
    info = {
        "store": str(path),
        "teacher": args.teacher,
        "fingerprint": teacher.fingerprint,
        **stats,
        "seconds": round(seconds, 1),
    }
    print(f"teacher store: {json.dumps(info)}")
    return path


# ----------------------------------------------------------------------------- evaluation


def _evaluate(run, ds, split, qids):
    from distilir.conventions import conventions_for
    from distilir.evaluation import evaluate

    qrels = {q: ds.qrels(split)[q] for q in qids}
    res = evaluate(run, qrels, measures=["nDCG@10", "R@100"], conventions=conventions_for(ds.name))
    return {k: round(v, 4) for k, v in res.aggregate.items()}


def _doc_ids(ds, split: str, qids: list[str], args) -> list[str]:
    """The whole corpus, or (``--corpus-sample N``, a quick check only) the judged documents of the
    evaluated queries plus N seeded others."""
    ids = sorted(ds.corpus())
    if args.corpus_sample is None:
        return ids
    qrels = ds.qrels(split)
    judged = {d for q in qids for d in qrels[q] if d in set(ids)}
    others = [d for d in ids if d not in judged]
    rng = np.random.default_rng([args.seed, 7])
    pick = rng.choice(len(others), size=min(args.corpus_sample, len(others)), replace=False)
    return sorted(judged | {others[i] for i in pick})


def eval_dense(model: str, ds, split: str, qids: list[str], args) -> dict[str, Any]:
    """Exact inner-product search over the full corpus (FAISS IndexFlatIP) with a SentenceTransformer."""
    import faiss
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    st = SentenceTransformer(model, device="cpu")
    st.max_seq_length = args.eval_max_length
    corpus = ds.corpus()
    ids = _doc_ids(ds, split, qids, args)
    docs = st.encode_document(
        [corpus[d].full_text for d in ids], batch_size=64, convert_to_numpy=True, show_progress_bar=True
    ).astype(np.float32)
    queries = ds.queries(split)
    q = st.encode_query([queries[x].text for x in qids], batch_size=64, convert_to_numpy=True).astype(
        np.float32
    )
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    scores, idx = index.search(q, min(101, len(ids)))
    run = {
        qid: {ids[j]: float(s) for j, s in zip(idx[i], scores[i], strict=True) if j >= 0}
        for i, qid in enumerate(qids)
    }
    return {**_evaluate(run, ds, split, qids), "eval_seconds": round(time.perf_counter() - t0, 1)}


def eval_sparse(model: str, ds, split: str, qids: list[str], args) -> dict[str, Any]:
    """Exact sparse dot-product search with a SparseEncoder; mean non-zero terms per doc and query."""
    from sentence_transformers import SparseEncoder

    t0 = time.perf_counter()
    enc = SparseEncoder(model, device="cpu")
    enc.max_seq_length = args.eval_max_length
    corpus = ds.corpus()
    ids = _doc_ids(ds, split, qids, args)
    docs = (
        enc.encode_document(
            [corpus[d].full_text for d in ids], batch_size=32, convert_to_tensor=True, show_progress_bar=True
        )
        .coalesce()
        .float()
    )
    queries = ds.queries(split)
    q = (
        enc.encode_query([queries[x].text for x in qids], batch_size=64, convert_to_tensor=True)
        .coalesce()
        .float()
    )
    sims = torch.sparse.mm(docs, q.to_dense().T).T  # [queries, docs]
    values, idx = torch.topk(sims, min(101, sims.shape[1]), dim=1)
    run = {
        qid: {ids[j]: float(s) for j, s in zip(idx[i].tolist(), values[i].tolist(), strict=True)}
        for i, qid in enumerate(qids)
    }
    return {
        **_evaluate(run, ds, split, qids),
        "doc_nonzero": round(docs._nnz() / len(ids), 1),
        "query_nonzero": round(q._nnz() / len(qids), 1),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }


def bm25_run(ds, split, qids, depth, work: Path):
    from distilir.candidates import FirstStageConfig, retrieve
    from distilir.conventions import conventions_for

    drop_self = conventions_for(ds.name).ignore_identical_ids
    return retrieve(
        ds,
        split,
        FirstStageConfig(retriever="bm25"),
        k=depth,
        queries=qids,
        drop_self=drop_self,
        cache_dir=work / "indexes",
    )


def eval_rerank(model: str, ds, split: str, qids: list[str], args, work: Path) -> dict[str, Any]:
    """A CrossEncoder reranks BM25's top ``--rerank-depth`` (raw logits, via CrossEncoderTeacher on
    ONNX Runtime)."""
    from sentence_transformers import CrossEncoder

    t0 = time.perf_counter()
    ce = CrossEncoder(model, device="cpu")
    first = bm25_run(ds, split, qids, args.rerank_depth, work)
    corpus, queries = ds.corpus(), ds.queries(split)
    pairs, keys = [], []
    for q in qids:
        for d in first.get(q, {}):
            pairs.append((queries[q].text, corpus[d].full_text))
            keys.append((q, d))
    # our cross-encoder teacher class on ONNX Runtime: predict's logits (within 1e-7), ~1.6x faster on CPU
    from distilir.teachers.cross_encoder import CrossEncoderTeacher

    scorer = CrossEncoderTeacher(ce, batch_size=32, backend="onnx", show_progress=True)
    scores = scorer.score_pairs(pairs)
    run: dict[str, dict[str, float]] = {}
    for (q, d), s in zip(keys, np.asarray(scores).reshape(-1).tolist(), strict=True):
        run.setdefault(q, {})[d] = float(s)
    return {
        **_evaluate(run, ds, split, qids),
        "pairs": len(pairs),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }


def eval_teacher(ds, split: str, qids: list[str], args, work: Path) -> dict[str, Any]:
    """The teacher reranking BM25's top ``--depth`` (scores kept in a store under the work dir)."""
    t0 = time.perf_counter()
    path = build_store(ds, split, qids, args, work)
    from distilir.teachers.store import TeacherStore

    store = TeacherStore.open(path)
    run = {q: dict(store.get(q)) for q in qids}
    return {**_evaluate(run, ds, split, qids), "eval_seconds": round(time.perf_counter() - t0, 1)}


# ----------------------------------------------------------------------------- training


def train_run(
    name: str,
    store: Path,
    dataset: str,
    split: str,
    student: dict,
    losses: list[dict],
    args,
    work: Path,
    flops: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    from distilir.training import Trainer, load_config

    overrides: dict[str, Any] = {
        "student": student,
        "losses": losses,
        "data.teacher_store": str(store),
        "data.dataset": dataset,
        "data.split": split,
        "data.candidates_per_query": args.candidates_per_query,
        "optim.batch_size": args.batch_size,
        "optim.lr": args.lr,
        "optim.seed": args.seed,
        "output_dir": str(work / "runs" / name),
        "checkpoint_every": args.checkpoint_every,
        "keep_last": 1,
        "threads": args.threads,
    }
    if args.steps:
        overrides["optim.steps"] = args.steps
    else:
        overrides["optim.epochs"] = args.epochs
    if flops:
        overrides["flops"] = flops
    overrides.update(extra or {})
    config = load_config(None, overrides)
    t0 = time.perf_counter()
    result = Trainer(config, data_dir=args.data_dir).train(resume="auto")
    info = {
        "steps": result.steps,
        "lr": args.lr,
        "candidates_per_query": args.candidates_per_query,
        "train_seconds": round(result.manifest["time"]["train_seconds"], 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "lists": result.manifest["data"]["lists"],
        "first_loss": round(result.losses[0], 4) if result.losses else None,
        "last_loss": round(result.losses[-1], 4) if result.losses else None,
    }
    return result.student_dir, info


# ----------------------------------------------------------------------------- main


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(results: dict[str, Any], args) -> None:
    rows = [
        f"| {name} | {r.get('nDCG@10', '')} | {r.get('R@100', '')} "
        f"| {'; '.join(str(x) for x in (r.get('candidates'), r.get('notes')) if x)} |"
        for name, r in results.items()
    ]
    lines = [
        "# Distillation runs (training stage)",
        "",
        f"Generated by `benchmarks/training/distill_scifact.py` on {_now()}; "
        "only the rows below ran. CPU, 2 cores shared with other jobs.",
        "",
        f"Teacher: `{args.teacher}` over the top {args.depth} of a first stage (BM25 unless the row's "
        "notes name another; `@dense`: all-MiniLM-L6-v2, the student's own retrieval); students trained "
        "with N = "
        f"{args.candidates_per_query} candidates per query (positive = teacher's top), "
        f"batch {args.batch_size}, "
        f"lr {args.lr} (each row's details record its own), seed {args.seed}; "
        "MiniLM students: KL student temperature "
        f"{args.student_temperature} (no tau^2 factor), Margin-MSE teacher scale "
        f"{args.margin_teacher_scale}; "
        f"SPLADE / cross-encoder: KL at temperature 1 (unbounded scores); "
        f"evaluation at max_length {args.eval_max_length}"
        + (
            f", QUICK CHECK on a corpus sample of {args.corpus_sample} (not comparable)"
            if args.corpus_sample
            else ""
        )
        + (f", {args.eval_queries} sampled test queries" if args.eval_queries else "")
        + ".",
        "",
        "| system | nDCG@10 | R@100 | notes |",
        "|---|---:|---:|---|",
        *(f"| {k} | {v} | | quoted, SciFact test |" for k, v in REFERENCE.items()),
        *rows,
        "",
        "Details (JSON):",
        "",
        "```json",
        json.dumps(results, indent=1, sort_keys=True),
        "```",
        "",
    ]
    from benchmarks.report import plot_training_curves

    work = Path(args.work_dir)
    run_dirs = {name: work / "runs" / name.split(": ", 1)[1] for name in results if ": " in name}
    curves = plot_training_curves(
        {name: folder for name, folder in run_dirs.items() if folder.is_dir()},
        Path(args.report).with_name(Path(args.report).stem + "_curves.png"),
    )
    if curves:
        lines += [
            "Training loss per step (from each run's metrics.jsonl):",
            "",
            f"![training curves]({curves.name})",
            "",
        ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from distilir.teachers.factory import DEFAULT_OFFLINE_TEACHER

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}")
    p.add_argument(
        "--work-dir",
        default=os.path.join(
            os.environ.get("DISTILIR_CACHE", os.path.expanduser("~/.cache/distilir")), "bench", "distill"
        ),
    )
    p.add_argument("--teacher", default=DEFAULT_OFFLINE_TEACHER)
    p.add_argument(
        "--depth", type=int, default=20, help="BM25 candidates per training query scored by the teacher"
    )
    p.add_argument("--candidates-per-query", type=int, default=8)
    p.add_argument(
        "--first-stage",
        default="bm25",
        choices=("bm25", "dense", "hybrid"),
        help="where training candidates come from (dense/hybrid: all-MiniLM-L6-v2, the student itself)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-length", type=int, default=128, help="training truncation of MiniLM students")
    p.add_argument(
        "--cross-max-length",
        type=int,
        default=256,
        help="truncation of the cross-encoder student's joint (query, document) input",
    )
    p.add_argument(
        "--head-lr",
        type=float,
        default=None,
        help="cross-encoder student: learning rate of its new, random head (default: --lr)",
    )
    p.add_argument("--eval-max-length", type=int, default=256)
    p.add_argument(
        "--student-temperature",
        type=float,
        default=0.05,
        help="KL: student scores (cosines) are divided by this",
    )
    p.add_argument(
        "--margin-teacher-scale",
        type=float,
        default=0.05,
        help="Margin-MSE: teacher scores are multiplied by this (data.teacher_scale)",
    )
    p.add_argument("--rerank-depth", type=int, default=100)
    p.add_argument("--eval-queries", type=int, default=None, help="evaluate a seeded sample of test queries")
    p.add_argument(
        "--corpus-sample",
        type=int,
        default=None,
        help="quick check only: search judged docs + N others instead of the corpus",
    )
    p.add_argument("--checkpoint-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--force", action="store_true", help="recompute runs already in results.json")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--report", default=str(REPORT))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        p.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")

    from distilir_index.models import resolve_model as resolve_student_model

    from distilir.data import load_dataset

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def record(name: str, value: dict[str, Any]) -> None:
        results[name] = value
        results_file.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_report(results, args)
        print(f"{name}: {json.dumps(value)}")

    def todo(name: str) -> bool:
        return args.force or name not in results

    scifact = load_dataset("scifact", data_dir=args.data_dir)
    test_qids = split_queries(scifact, "test", None, args.seed)
    if args.eval_queries:
        rng = np.random.default_rng([args.seed, 5])
        test_qids = sorted(rng.choice(test_qids, size=min(args.eval_queries, len(test_qids)), replace=False))
    minilm = resolve_student_model("all-MiniLM-L6-v2")
    store = None
    if any(r.startswith(("minilm", "splade", "cross")) for r in runs):
        store = build_store(scifact, "train", split_queries(scifact, "train", None, args.seed), args, work)
    if not args.skip_baselines:
        if any(r.startswith("minilm") for r in runs) and todo("scifact: all-MiniLM-L6-v2 (base, measured)"):
            record(
                "scifact: all-MiniLM-L6-v2 (base, measured)",
                eval_dense(minilm, scifact, "test", test_qids, args),
            )
        if todo("scifact: BM25 (measured)"):
            record(
                "scifact: BM25 (measured)",
                _evaluate(bm25_run(scifact, "test", test_qids, 1000, work), scifact, "test", test_qids),
            )
    student_l6 = {"kind": "bi-encoder", "model": "all-MiniLM-L6-v2", "max_length": args.max_length}
    # Score ranges: all-MiniLM-L6-v2 normalises its vectors, so student scores are cosines in [-1, 1],
    # while the teacher's are z-scores spanning several units. KL therefore divides the student's
    # scores by 0.05 (x20, as sentence-transformers' MNRL scale) without the Hinton tau^2 factor, and
    # Margin-MSE multiplies the teacher's scores by 0.05 (data.teacher_scale) so that its margins are
    # reachable by cosine margins. (A first run with tau_s = 1 is kept in the report as such.)
    kl = {
        "name": "kl",
        "params": {"student_temperature": args.student_temperature, "scale_by_temperature": False},
    }
    loss_sets = {
        "margin_mse": [{"name": "margin_mse"}],
        "kl": [kl],
        "kl_infonce": [kl, {"name": "infonce", "weight": 0.1, "params": {"temperature": 0.05}}],
        # the weights the other way round: InfoNCE on the teacher's top document (in-batch negatives)
        # carries the update, KL over the BM25 candidates only shapes it
        "infonce_kl": [
            {"name": "infonce", "weight": 1.0, "params": {"temperature": 0.05}},
            {**kl, "weight": 0.1},
        ],
        "kl_raw": [{"name": "kl"}],  # unbounded student scores (SPLADE dot products, cross-encoder logits)
    }
    if "teacher" in runs and todo(f"scifact: teacher reranking BM25 top {args.depth}"):
        record(
            f"scifact: teacher reranking BM25 top {args.depth}",
            eval_teacher(scifact, "test", test_qids, args, work),
        )
    for run in [r for r in runs if r != "teacher"]:
        name = f"scifact: {run}" if not run.startswith("arguana") else f"arguana (held-out half): {run}"
        if run.startswith("minilm-") and args.first_stage != "bm25":
            name = f"scifact: {run}@{args.first_stage}"
        if not todo(name):
            continue
        if run.startswith("minilm-"):
            loss = run.split("-", 1)[1]
            scale = {"data.teacher_scale": args.margin_teacher_scale} if loss == "margin_mse" else {}
            label = run if args.first_stage == "bm25" else f"{run}@{args.first_stage}"
            folder, info = train_run(
                label, store, "scifact", "train", student_l6, loss_sets[loss], args, work, extra=scale
            )
            info["candidates"] = f"{args.first_stage} top {args.depth}"
            record(name, {**eval_dense(str(folder), scifact, "test", test_qids, args), **info})
        elif run == "splade-kl":
            if not args.skip_baselines and todo("scifact: splade-tiny (base, measured)"):
                record(
                    "scifact: splade-tiny (base, measured)",
                    eval_sparse(resolve_student_model("splade-tiny"), scifact, "test", test_qids, args),
                )
            folder, info = train_run(
                run,
                store,
                "scifact",
                "train",
                {"kind": "splade", "model": "splade-tiny", "max_length": args.max_length},
                loss_sets["kl_raw"],
                args,
                work,
                flops={"query_weight": 5e-4, "document_weight": 5e-4, "warmup_steps": 20},
            )
            record(name, {**eval_sparse(str(folder), scifact, "test", test_qids, args), **info})
        elif run == "cross-kl":
            if not args.skip_baselines and todo(f"scifact: BM25 top {args.rerank_depth}"):
                record(
                    f"scifact: BM25 top {args.rerank_depth}",
                    _evaluate(
                        bm25_run(scifact, "test", test_qids, args.rerank_depth, work),
                        scifact,
                        "test",
                        test_qids,
                    ),
                )
            folder, info = train_run(
                run,
                store,
                "scifact",
                "train",
                {"kind": "cross-encoder", "model": "all-MiniLM-L6-v2", "max_length": args.cross_max_length},
                loss_sets["kl_raw"],
                args,
                work,
                extra={"optim.head_lr": args.head_lr},
            )
            info.update(head_lr=args.head_lr, max_length=args.cross_max_length)
            record(
                name,
                {
                    **eval_rerank(str(folder), scifact, "test", test_qids, args, work),
                    **info,
                    "notes": f"reranks BM25 top {args.rerank_depth}",
                },
            )
        elif run.startswith("arguana-"):
            arguana = load_dataset("arguana", data_dir=args.data_dir)
            distil = split_queries(arguana, "test", "distil", args.seed)
            held_out = split_queries(arguana, "test", "eval", args.seed)
            if args.eval_queries:
                held_out = held_out[: args.eval_queries]
            a_store = build_store(arguana, "test", distil, args, work)
            if not args.skip_baselines and todo("arguana (held-out half): all-MiniLM-L6-v2 (base, measured)"):
                record(
                    "arguana (held-out half): all-MiniLM-L6-v2 (base, measured)",
                    eval_dense(minilm, arguana, "test", held_out, args),
                )
                record(
                    "arguana (held-out half): BM25 (measured)",
                    _evaluate(bm25_run(arguana, "test", held_out, 1000, work), arguana, "test", held_out),
                )
            loss = run.split("-", 1)[1]
            scale = {"data.teacher_scale": args.margin_teacher_scale} if loss == "margin_mse" else {}
            folder, info = train_run(
                run, a_store, "arguana", "test", student_l6, loss_sets[loss], args, work, extra=scale
            )
            info["candidates"] = f"{args.first_stage} top {args.depth}"
            record(
                name,
                {
                    **eval_dense(str(folder), arguana, "test", held_out, args),
                    **info,
                    "notes": f"distilled on {len(distil)} queries, evaluated on the other {len(held_out)}",
                },
            )
    write_report(results, args)  # also when every asked-for run was cached: refreshes text and figure
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
