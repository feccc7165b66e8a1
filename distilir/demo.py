"""`make demo` / `distilir demo`: the main job end to end on the embedded default collection.

Stage 1 — baselines: BM25 and the off-the-shelf dense model on the test split, beside the
published figures.
"""

from __future__ import annotations

import time

from distilir.published import PUBLISHED

__all__ = ["run_demo"]

MEASURES = ("nDCG@10", "R@100")


def _row(dataset: str, system: str, key: str, result, seconds: float) -> dict:
    row = {"system": system}
    for m in MEASURES:
        row[m] = f"{result.aggregate[m]:.4f}"
        pub = PUBLISHED.get((dataset, key), {}).get(m)
        row[f"{m} published"] = f"{pub[0]:.3f}" if pub else "-"
    row["time (s)"] = f"{seconds:.0f}"
    return row


def run_demo(data_dir: str | None = None, dataset: str = "scifact", quick: bool = False) -> int:
    from distilir.candidates import FirstStageConfig, retrieve
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.evaluation import evaluate, format_table

    ds = load_dataset(dataset, data_dir=data_dir)
    conv = conventions_for(ds.name)
    split = "test"
    qrels = ds.qrels(split)
    rows = []
    print(f"== distilir demo: {ds.name} ({split}: {len(qrels)} judged queries) ==")
    for key, system, config in [
        ("bm25", "BM25 (k1=0.9, b=0.4)", FirstStageConfig("bm25")),
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2 (dense, exact)", FirstStageConfig("dense", model="all-MiniLM-L6-v2")),
    ]:
        t0 = time.perf_counter()
        run = retrieve(ds, split, config, k=100 if quick else 1000, drop_self=conv.ignore_identical_ids)
        res = evaluate(run, qrels, measures=MEASURES, ignore_identical_ids=conv.ignore_identical_ids,
                       relevance_level=conv.relevance_level)
        rows.append(_row(ds.name, system, key, res, time.perf_counter() - t0))
    print()
    print(format_table(rows, list(rows[0])))
    print("\npublished: BM25 from pyserini's BEIR reproductions (flat); all-MiniLM-L6-v2 from MTEB.")
    return 0
