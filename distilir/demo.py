"""`make demo` / `distilir demo`: the main job end to end on the embedded default collection.

1. baselines on the test split: BM25 and the off-the-shelf dense model (all-MiniLM-L6-v2);
2. candidates: BM25 top ``depth`` for the training queries (and for the test queries, to show the
   teacher's own quality by re-ranking);
3. teacher scores: the offline ensemble (all-mpnet-base-v2 + SPLADE-tiny + BM25, z-scored) into a
   resumable teacher score store;
4. training: all-MiniLM-L6-v2 distilled with InfoNCE on the teacher's top document + 0.1 listwise KL
   on the stored scores (the recipe that beat the base student in benchmarks/reports/training_distill.md);
5. evaluation: teacher / base student / distilled student side by side, with the published figures.

Everything lands under a work folder (default ``$DISTILIR_CACHE/demo``) and is reused on the next
run: an interrupted demo continues where it stopped (indexes, teacher store and training resume).
``--quick`` uses a cheaper teacher (SPLADE-tiny + BM25) and fewer training queries.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from distilir.published import PUBLISHED

__all__ = ["run_demo"]

MEASURES = ("nDCG@10", "R@100")


def _row(dataset: str, system: str, key: str | None, result, seconds: float) -> dict:
    row = {"system": system}
    for m in MEASURES:
        row[m] = f"{result.aggregate[m]:.4f}"
        pub = PUBLISHED.get((dataset, key), {}).get(m) if key else None
        row[f"{m} published"] = f"{pub[0]:.3f}" if pub else "-"
    row["time (s)"] = f"{seconds:.0f}"
    return row


def _work_dir() -> Path:
    from distilir_index.models import cache_dir

    return Path(os.environ.get("DISTILIR_DEMO_DIR") or cache_dir() / "demo")


def run_demo(data_dir: str | None = None, dataset: str = "scifact", quick: bool = False) -> int:
    from distilir.candidates import FirstStageConfig, build_index, iter_search, retrieve
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.evaluation import evaluate, format_table
    from distilir.teachers import DEFAULT_OFFLINE_TEACHER, TeacherStore, build_teacher
    from distilir.training import Trainer, load_config

    ds = load_dataset(dataset, data_dir=data_dir)
    conv = conventions_for(ds.name)
    train_split, test_split = "train", "test"
    if train_split not in ds.splits():
        raise ValueError(f"the demo distils on a 'train' split; {ds.name} has {ds.splits()}")
    qrels = ds.qrels(test_split)
    work = _work_dir() / ("quick" if quick else "full") / ds.name.replace("/", "_")
    work.mkdir(parents=True, exist_ok=True)
    depth_train, depth_test = (10, 20) if quick else (20, 20)
    rows: list[dict] = []

    def score(run, system, key, t0):
        res = evaluate(run, qrels, measures=MEASURES, conventions=conv)
        rows.append(_row(ds.name, system, key, res, time.perf_counter() - t0))
        print(f"  {system}: nDCG@10 {res.aggregate['nDCG@10']:.4f}", flush=True)
        return res

    print(f"== distilir demo on {ds.name}: distil a teacher into all-MiniLM-L6-v2 ==")
    print(f"work folder: {work} (rerunning the demo reuses it)\n")

    print("[1/5] baselines", flush=True)
    t0 = time.perf_counter()
    bm25_run = retrieve(ds, test_split, FirstStageConfig("bm25"), k=1000, drop_self=conv.ignore_identical_ids)
    score(bm25_run, "BM25 (k1=0.9, b=0.4)", "bm25", t0)
    t0 = time.perf_counter()
    base_run = retrieve(
        ds,
        test_split,
        FirstStageConfig("dense", model="all-MiniLM-L6-v2"),
        k=1000,
        drop_self=conv.ignore_identical_ids,
    )
    score(base_run, "all-MiniLM-L6-v2, off the shelf", "all-MiniLM-L6-v2", t0)

    print(f"\n[2/5] candidates: BM25 top {depth_train} (train) and top {depth_test} (test)", flush=True)
    bm25 = build_index(ds, FirstStageConfig("bm25"))
    train_q = {q: v.text for q, v in ds.queries(train_split).items()}
    if quick:
        train_q = dict(sorted(train_q.items())[:300])
    test_q = {q: v.text for q, v in ds.queries(test_split).items()}
    candidates = {q: list(d) for q, d in iter_search(bm25, train_q, k=depth_train, desc="train candidates")}
    test_candidates = {q: list(d) for q, d in iter_search(bm25, test_q, k=depth_test, desc="test candidates")}

    spec = "ensemble?normalization=zscore:splade:splade-tiny*1+bm25*1" if quick else DEFAULT_OFFLINE_TEACHER
    if importlib.util.find_spec("onnxruntime") is not None:
        # the same scores, about twice as fast on CPU (distilir.teachers.bi_encoder)
        spec = spec.replace("bi-encoder:all-mpnet-base-v2", "bi-encoder:all-mpnet-base-v2?backend=onnx")
    # document embeddings of the embedding teachers are kept on disk: a rerun (or another split) of the
    # demo encodes nothing twice
    os.environ.setdefault("DISTILIR_EMBEDDING_CACHE", str(_work_dir() / "embeddings"))
    print(f"\n[3/5] teacher scores: {spec}", flush=True)
    corpus = ds.corpus()
    teacher = build_teacher(spec, corpus={d.id: d.full_text for d in corpus.values()})
    docs = {d: doc.full_text for d, doc in corpus.items()}
    store_dir = work / f"teacher-{teacher.fingerprint}"
    t0 = time.perf_counter()
    store = TeacherStore.open(
        store_dir,
        teacher,
        candidate_source={
            "retriever": "bm25",
            "dataset": ds.name,
            "train_depth": depth_train,
            "test_depth": depth_test,
        },
    )
    try:
        store.score(teacher, {**train_q, **test_q}, docs, {**candidates, **test_candidates}, progress=True)
        teacher_run = {q: dict(store.get(q)) for q in test_candidates}
    finally:
        store.close()
    score(teacher_run, f"teacher re-ranking BM25 top {depth_test}", None, t0)

    print("\n[4/5] training all-MiniLM-L6-v2 with InfoNCE + 0.1 listwise KL", flush=True)
    overrides = {
        "student.kind": "bi_encoder",
        "student.model": "all-MiniLM-L6-v2",
        "student.max_length": 128,
        # all-MiniLM-L6-v2 scores are cosines in [-1, 1] while the teacher's are z-scores: KL divides
        # the student's scores by 0.05 (as sentence-transformers' MNRL scale 20) without the tau^2
        # factor (benchmarks/reports/training_distill*.md: at temperature 1 the student fell to 0.573)
        # InfoNCE on the teacher's top document (in-batch negatives) carries the update and KL over the
        # candidates shapes it: on scifact KL-first recipes fell below the base student (0.59-0.62)
        # while this one rose above it (benchmarks/reports/training_distill.md)
        "losses": [
            {"name": "infonce", "weight": 1.0, "params": {"temperature": 0.05}},
            {
                "name": "kl",
                "weight": 0.1,
                "params": {"student_temperature": 0.05, "scale_by_temperature": False},
            },
        ],
        "data.teacher_store": str(store_dir),
        "data.dataset": dataset,
        "data.split": train_split,
        "data.candidates_per_query": 8,
        "data.max_queries": len(train_q),
        "optim.batch_size": 16,
        "optim.epochs": 1,
        "optim.lr": 1e-5,
        "optim.seed": 42,
        "output_dir": str(work / "student-infonce-kl"),
        "checkpoint_every": 20,
        "keep_last": 1,
    }
    config = load_config(None, overrides)
    t0 = time.perf_counter()
    result = Trainer(config, data_dir=data_dir).train(resume="auto")
    print(f"  {result.steps} steps in {time.perf_counter() - t0:.0f}s; student at {result.student_dir}")

    print("\n[5/5] evaluating the distilled student (exact dense retrieval over the corpus)", flush=True)
    t0 = time.perf_counter()
    student_run = retrieve(
        ds,
        test_split,
        FirstStageConfig("dense", model=str(result.student_dir)),
        k=1000,
        drop_self=conv.ignore_identical_ids,
    )
    score(student_run, "all-MiniLM-L6-v2, distilled", None, t0)

    print()
    print(format_table(rows, list(rows[0])))
    print(
        "\npublished: BM25 from pyserini's BEIR reproductions (flat); all-MiniLM-L6-v2 from MTEB. "
        "The teacher "
        f"row re-ranks BM25's top {depth_test} only, so its R@100 is bounded by BM25's R@{depth_test}."
    )
    return 0
