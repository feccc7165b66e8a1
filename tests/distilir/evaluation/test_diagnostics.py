"""Diagnostics against hand-computed values."""

import numpy as np

from distilir.evaluation.diagnostics import geometry, list_agreement, rerank_run


def test_list_agreement_by_hand():
    teacher = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}, "r": {"a": 1.0, "b": 2.0}}
    student = {"q": {"a": 0.9, "b": 0.1, "c": 0.5}, "r": {"a": 0.2, "b": 0.1}}
    got = list_agreement(student, teacher)
    # q: pairs (a,b)+ (a,c)+ (b,c)-  -> tau = 1/3; r: one discordant pair -> -1
    assert np.isclose(got["kendall_tau"], (1 / 3 - 1) / 2)
    assert got["top1_agreement"] == 0.5 and got["queries"] == 2


def test_rerank_run_and_geometry():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.0]])
    run = rerank_run(q, ["q"], docs, {"a": 0, "b": 1, "c": 2}, {"q": {"a": 1.0, "c": 0.0, "zz": 2.0}})
    assert run == {"q": {"a": 1.0, "c": 0.6}}
    g = geometry(docs, q, pairs=2000, seed=1)
    assert g["query_top1_cosine"] == 1.0
    assert 0.0 < g["doc_doc_cosine"] < 0.8
