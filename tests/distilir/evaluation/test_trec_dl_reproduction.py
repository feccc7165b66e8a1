"""The shipped TREC DL 2019 pool runs, read with our reader and scored with DL conventions (gains = grade for
nDCG, grade >= 2 relevant for binary measures), reproduce the nDCG@10 the data README publishes."""

from __future__ import annotations

import pytest

from distilir.data import load_dataset, read_run
from distilir.evaluation import evaluate

PUBLISHED_NDCG10 = {"bm25.top100": 0.5187, "contriever.top100": 0.6311}


@pytest.mark.parametrize("run_name", sorted(PUBLISHED_NDCG10))
def test_pool_runs_reproduce_published_ndcg_at_10(data_dir, run_name):
    ds = load_dataset("trec-dl-2019-passage-pool", data_dir=data_dir)
    run = read_run(ds.runs()[run_name])
    res = evaluate(run, ds.qrels("test"), ["nDCG@10", "RR@10", "R@100"], relevance_level=2)
    assert res.num_queries == 43 and res.missing_queries == ()
    assert round(res["nDCG@10"], 4) == PUBLISHED_NDCG10[run_name]
    # nDCG's gains are the grades, so the relevance level must not change it
    assert evaluate(run, ds.qrels("test"), ["nDCG@10"])["nDCG@10"] == pytest.approx(res["nDCG@10"], abs=1e-12)
