"""EnsembleTeacher: per-query normalisation and weighted mean against hand computation; agreement.

Members here are FAKE fixed-score teachers (test doubles returning given numbers) and one real BM25
teacher; the ensemble's arithmetic is what is under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from distilir.teachers.base import BaseTeacher, TeacherError
from distilir.teachers.bm25 import BM25Teacher
from distilir.teachers.ensemble import EnsembleTeacher, normalize_scores


class FixedScores(BaseTeacher):
    """FAKE teacher (test double): returns the scores it was given, per query text."""

    score_type = "similarity"

    def __init__(self, name: str, table: dict[str, list[float]]) -> None:
        self.name = name
        self.table = table

    def score_many(self, queries, docs):
        return [list(self.table[q][: len(d)]) for q, d in zip(queries, docs, strict=True)]

    def get_config_dict(self):
        return {"kind": "fixed", "name": self.name}


def test_normalizations_by_hand():
    s = [3.0, 1.0, 2.0, 2.0]
    mean, std = 2.0, math.sqrt((1 + 1 + 0 + 0) / 4)
    np.testing.assert_allclose(normalize_scores(s, "zscore"), [(x - mean) / std for x in s])
    np.testing.assert_allclose(normalize_scores(s, "minmax"), [1.0, 0.0, 0.5, 0.5])
    # ranks (1 = best, ties averaged): 1, 4, 2.5, 2.5 -> (n - r) / (n - 1)
    np.testing.assert_allclose(normalize_scores(s, "rank"), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(normalize_scores([5, 1, 3], "rank"), [1.0, 0.0, 0.5])
    for m in ("zscore", "minmax"):
        assert normalize_scores([7.0, 7.0], m).tolist() == [0.0, 0.0]
    assert normalize_scores([7.0, 7.0], "rank").tolist() == [0.5, 0.5]  # all tied at rank 1.5
    for m in ("zscore", "minmax", "rank"):
        assert normalize_scores([1.0], m).tolist() == [0.0]
    with pytest.raises(TeacherError, match="normalization"):
        normalize_scores(s, "softmax")
    with pytest.raises(TeacherError, match="NaN"):
        normalize_scores([1.0, float("nan")])


def test_weighted_mean_of_normalised_scores_by_hand():
    a = FixedScores("a", {"q1": [10.0, 0.0, 5.0], "q2": [1.0, 2.0]})
    b = FixedScores("b", {"q1": [0.1, 0.3, 0.2], "q2": [4.0, 4.0]})
    ens = EnsembleTeacher([(a, 3.0), (b, 1.0)], normalization="minmax")
    got = ens.score_many(["q1", "q2"], [["x", "y", "z"], ["u", "v"]])
    # q1: minmax a = [1, 0, .5], b = [0, 1, .5]; (3a + b) / 4
    np.testing.assert_allclose(got[0], [(3 * 1 + 0) / 4, (0 + 1) / 4, (1.5 + 0.5) / 4])
    # q2: a = [0, 1], b constant -> [0, 0]
    np.testing.assert_allclose(got[1], [0.0, 3 / 4])
    c = FixedScores("c", {"q1": [0.1, 0.2, 0.4]})
    z = EnsembleTeacher([a, c]).score("q1", ["x", "y", "z"])  # bare teachers weigh 1; zscore default
    za = (np.array([10, 0, 5]) - 5) / np.std([10, 0, 5])
    zb = (np.array([0.1, 0.2, 0.4]) - 0.7 / 3) / np.std([0.1, 0.2, 0.4])
    np.testing.assert_allclose(z, (za + zb) / 2)
    assert ens.score_type == "normalized"


def test_agreement_against_scipy():
    a = FixedScores("a", {"q1": [4, 3, 2, 1], "q2": [1, 2, 3, 4]})
    b = FixedScores("b", {"q1": [4, 3, 1, 2], "q2": [4, 3, 2, 1]})
    ens = EnsembleTeacher([(a, 2.0), (b, 1.0)], normalization="rank")
    out = ens.score_many(["q1", "q2"], [list("wxyz"), list("wxyz")])
    rep = ens.agreement()
    assert rep["queries"] == 2
    tau_ab = np.mean(
        [kendalltau([4, 3, 2, 1], [4, 3, 1, 2]).statistic, kendalltau([1, 2, 3, 4], [4, 3, 2, 1]).statistic]
    )
    assert rep["pairwise"]["a|b"]["kendall_tau"] == pytest.approx(tau_ab)
    rho_a = np.mean([spearmanr(a.table[q], out[i]).statistic for i, q in enumerate(["q1", "q2"])])
    assert rep["member_vs_ensemble"]["a"]["spearman"] == pytest.approx(rho_a)
    assert rep["member_vs_ensemble"]["a"]["kendall_tau"] > rep["member_vs_ensemble"]["b"]["kendall_tau"]
    ens.reset_agreement()
    assert ens.agreement()["queries"] == 0 and ens.agreement()["pairwise"]["a|b"]["spearman"] is None


def test_with_a_real_member_and_config():
    corpus = ["solar panels convert light", "wind turbines make power", "cats purr"]
    bm25 = BM25Teacher(corpus)
    fixed = FixedScores("fixed", {"solar power": [0.0, 1.0, 2.0]})
    ens = EnsembleTeacher([(bm25, 1.0), (fixed, 1.0), (bm25, 2.0)])
    assert ens.labels == ["bm25", "fixed", "bm25#2"]
    got = ens.score("solar power", corpus)
    zb = normalize_scores(bm25.score("solar power", corpus))
    zf = normalize_scores([0.0, 1.0, 2.0])
    np.testing.assert_allclose(got, (zb + zf + 2 * zb) / 4)
    cfg = ens.get_config_dict()
    assert [m["weight"] for m in cfg["members"]] == [1.0, 1.0, 2.0]
    assert cfg["members"][0]["config"] == bm25.get_config_dict()
    assert (
        EnsembleTeacher([(bm25, 1.0), (fixed, 2.0)]).fingerprint
        != EnsembleTeacher([(bm25, 1.0), (fixed, 1.0)]).fingerprint
    )
    with pytest.raises(TeacherError, match="weight"):
        EnsembleTeacher([(bm25, 0.0)])
    with pytest.raises(TeacherError, match="not a teacher"):
        EnsembleTeacher([("bm25", 1.0)])
    with pytest.raises(TeacherError, match="at least one"):
        EnsembleTeacher([])
