"""evaluate(): agreement with pytrec_eval called directly, the judged-queries denominator, relevance levels,
self-hit removal (nDCG computed by hand), and input checks."""

from __future__ import annotations

import json
import math

import pytest
import pytrec_eval

from distilir.data import read_qrels, read_run
from distilir.evaluation import DEFAULT_MEASURES, EvalResult, EvaluationError, EvaluationWarning, evaluate


@pytest.fixture(scope="module")
def dl19(data_dir):
    folder = data_dir / "trec-dl-2019-passage-pool"
    return read_qrels(folder / "qrels" / "test.tsv"), read_run(folder / "runs" / "bm25.top100.trec")


def _pytrec_mean(qrels, run, measure, relevance_level=1):
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure}, relevance_level=relevance_level).evaluate(
        run
    )
    return sum(v[measure] for v in per_query.values()) / len(per_query)


@pytest.mark.parametrize("relevance_level", [1, 2])
def test_agrees_with_pytrec_eval_on_the_shipped_run(dl19, relevance_level):
    qrels, run = dl19
    ours = evaluate(run, qrels, ["nDCG@10", "R@100", "P@10", "AP", "nDCG"], relevance_level=relevance_level)
    reference = {
        "nDCG@10": "ndcg_cut_10",
        "R@100": "recall_100",
        "P@10": "P_10",
        "AP": "map",
        "nDCG": "ndcg",
    }
    assert ours.num_queries == 43 and ours.missing_queries == ()
    for measure, trec_name in reference.items():
        expected = _pytrec_mean(qrels, run, trec_name, relevance_level)
        assert ours.aggregate[measure] == pytest.approx(expected, abs=5e-5), measure
    # per-query values too
    direct = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    for qid, values in ours.per_query.items():
        assert values["nDCG@10"] == pytest.approx(direct[qid]["ndcg_cut_10"], abs=1e-9)


def test_rr_at_10_with_relevance_level_2_matches_pytrec_eval_on_the_top_10(dl19):
    qrels, run = dl19
    res = evaluate(run, qrels, ["RR@10"], relevance_level=2)
    assert res.settings["resolved_measures"] == {"RR@10": "RR(rel=2)@10"}
    # reference: trec_eval's recip_rank (no cutoff) on each ranking cut to its top 10 (trec_eval order)
    top10 = {
        q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]) for q, d in run.items()
    }
    assert res["RR@10"] == pytest.approx(
        _pytrec_mean(qrels, top10, "recip_rank", relevance_level=2), abs=1e-9
    )
    assert res["RR@10"] < evaluate(run, qrels, ["RR@10"])["RR@10"]  # grade-1 hits no longer count


def test_judged_queries_missing_from_the_run_count_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 2.0, "dx": 1.0}, "q3": {"d9": 1.0}}  # q2 absent, q3 unjudged
    res = evaluate(run, qrels, ["RR@10", "nDCG@10", "R@100"])
    assert res.num_queries == 2 and res.missing_queries == ("q2",)
    assert res.per_query["q2"] == {"RR@10": 0.0, "nDCG@10": 0.0, "R@100": 0.0}
    assert "q3" not in res.per_query
    assert res.aggregate == {"RR@10": 0.5, "nDCG@10": 0.5, "R@100": 0.5}
    # pytrec_eval on its own would average over the run's queries only, giving 1.0
    assert _pytrec_mean(qrels, run, "recip_rank") == 1.0


def test_ignore_identical_ids_removes_self_hits():
    qrels = {"a": {"d1": 1, "d2": 2}}
    run = {"a": {"a": 3.0, "d2": 2.0, "x": 1.5, "d1": 1.0}}
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    with_self = evaluate(run, qrels, ["nDCG@10"])
    # ranking a, d2, x, d1 -> gains 0, 2, 0, 1 at ranks 1..4
    assert with_self["nDCG@10"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(5)) / ideal)
    without = evaluate(run, qrels, ["nDCG@10"], ignore_identical_ids=True)
    # ranking d2, x, d1 -> gains 2, 0, 1
    assert without["nDCG@10"] == pytest.approx((2 / math.log2(2) + 1 / math.log2(4)) / ideal)
    assert without.settings["identical_ids_dropped"] == 1
    assert without["nDCG@10"] > with_self["nDCG@10"]


def test_relevance_level_applies_to_binary_measures_only():
    qrels = {"q": {"d1": 1, "d2": 2}}
    run = {"q": {"d1": 2.0, "d2": 1.0}}
    level1 = evaluate(run, qrels, ["RR@10", "nDCG@10"])
    level2 = evaluate(run, qrels, ["RR@10", "nDCG@10", "RR(rel=1)@10"], relevance_level=2)
    assert level1["RR@10"] == 1.0 and level2["RR@10"] == 0.5
    assert level2["RR(rel=1)@10"] == 1.0  # a measure that sets rel keeps it
    assert (
        level1["nDCG@10"]
        == level2["nDCG@10"]
        == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    )


def test_result_shape_and_serialisation(dl19):
    qrels, run = dl19
    res = evaluate(run, qrels)
    assert isinstance(res, EvalResult)
    assert res.measures == DEFAULT_MEASURES and tuple(res.aggregate) == DEFAULT_MEASURES
    assert set(res.per_query) == set(qrels)
    blob = json.loads(json.dumps(res.to_dict()))
    assert blob["aggregate"]["nDCG@10"] == res["nDCG@10"] and blob["num_queries"] == 43
    with pytest.raises(KeyError, match="was not computed"):
        res["P@5"]


def test_bad_inputs_are_rejected_with_guidance():
    qrels = {"q": {"d": 1}}
    with pytest.raises(EvaluationError, match="cannot parse measure 'nDCG@@10'.*'nDCG@10'"):
        evaluate({"q": {"d": 1.0}}, qrels, ["nDCG@@10"])
    with pytest.raises(EvaluationError, match="cannot parse measure 'NotAMeasure@10'"):
        evaluate({"q": {"d": 1.0}}, qrels, ["NotAMeasure@10"])
    with pytest.raises(EvaluationError, match="invalid measure"):
        evaluate({"q": {"d": 1.0}}, qrels, ["nDCG(rel=2)@10"])
    with pytest.raises(EvaluationError, match="not finite"):
        evaluate({"q": {"d": float("nan")}}, qrels)
    with pytest.raises(EvaluationError, match="Convert ids with str"):
        evaluate({1: {"d": 1.0}}, qrels)
    with pytest.raises(EvaluationError, match="non-empty dict"):
        evaluate({"q": {"d": 1.0}}, {})
    with pytest.raises(EvaluationError, match="not an integer grade"):
        evaluate({"q": {"d": 1.0}}, {"q": {"d": 0.5}})
    with pytest.raises(EvaluationError, match="relevance_level must be an integer >= 1"):
        evaluate({"q": {"d": 1.0}}, qrels, relevance_level=0)
    with pytest.raises(EvaluationError, match="measures is empty"):
        evaluate({"q": {"d": 1.0}}, qrels, [])


def test_disjoint_ids_warn():
    with pytest.warns(EvaluationWarning, match="shares no query id"):
        res = evaluate({"Q1": {"d": 1.0}}, {"q1": {"d": 1}}, ["RR@10"])
    assert res["RR@10"] == 0.0


def test_conventions_give_the_defaults_and_explicit_arguments_win():
    from distilir.conventions import conventions_for
    from distilir.evaluation import evaluate

    run = {"q1": {"q1": 9.0, "d1": 2.0, "d2": 1.0}}
    qrels = {"q1": {"d1": 1, "q1": 1, "d2": 2}}
    arg = evaluate(run, qrels, ["RR@10"], conventions="arguana")  # drops the self-hit
    assert arg.settings["ignore_identical_ids"] is True and arg.aggregate["RR@10"] == 1.0
    dl = evaluate(run, {"q1": {"d1": 1, "d2": 2}}, ["RR@10"], conventions=conventions_for("trec-dl-2019"))
    assert dl.settings["relevance_level"] == 2 and dl.aggregate["RR@10"] == 1 / 3
    forced = evaluate(run, qrels, ["RR@10"], conventions="arguana", ignore_identical_ids=False)
    assert forced.aggregate["RR@10"] == 1.0 and forced.settings["ignore_identical_ids"] is False
    assert set(evaluate(run, qrels, conventions="msmarco-dev").aggregate) == {
        "RR@10",
        "nDCG@10",
        "R@100",
        "R@1000",
    }
