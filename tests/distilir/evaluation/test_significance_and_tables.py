"""paired_test against the t-test formula worked by hand; tables."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from distilir.data import load_dataset, read_run
from distilir.evaluation import EvaluationError, compare_table, evaluate, format_table, paired_test


def test_paired_test_matches_the_formula():
    a = {"q1": {"m": 0.9}, "q2": {"m": 0.8}, "q3": {"m": 0.7}, "q4": {"m": 0.6}}
    b = {"q1": {"m": 0.8}, "q2": {"m": 0.6}, "q3": {"m": 0.4}, "q4": {"m": 0.2}}
    diffs = [0.1, 0.2, 0.3, 0.4]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    t = mean / (sd / math.sqrt(n))
    p_expected = 2 * stats.t.sf(abs(t), df=n - 1)
    mean_diff, p = paired_test(a, b, "m")
    assert mean_diff == pytest.approx(0.25)
    assert p == pytest.approx(p_expected, rel=1e-9)
    assert paired_test(b, a, "m") == (pytest.approx(-0.25), pytest.approx(p_expected, rel=1e-9))


def test_paired_test_degenerate_and_bad_inputs():
    same = {"q1": {"m": 0.5}, "q2": {"m": 0.1}}
    shifted = {"q1": {"m": 0.6}, "q2": {"m": 0.2}}
    assert paired_test(same, same, "m") == (0.0, 1.0)
    assert paired_test(shifted, same, "m") == (pytest.approx(0.1), 0.0)
    with pytest.raises(EvaluationError, match="different queries"):
        paired_test(same, {"q1": {"m": 0.5}, "q3": {"m": 0.1}}, "m")
    with pytest.raises(EvaluationError, match="measure 'x' is not in the per-query results"):
        paired_test(same, shifted, "x")
    with pytest.raises(EvaluationError, match="at least 2 queries"):
        paired_test({"q1": {"m": 1.0}}, {"q1": {"m": 0.0}}, "m")


@pytest.fixture(scope="module")
def dl19_results(data_dir):
    ds = load_dataset("trec-dl-2019-passage-pool", data_dir=data_dir)
    return {
        name: evaluate(read_run(path), ds.qrels("test"), ["nDCG@10", "RR@10"], relevance_level=2)
        for name, path in ds.runs().items()
    }


def test_paired_test_on_real_runs(dl19_results):
    contriever, bm25 = dl19_results["contriever.top100"], dl19_results["bm25.top100"]
    mean_diff, p = paired_test(contriever, bm25, "nDCG@10")
    assert mean_diff == pytest.approx(contriever["nDCG@10"] - bm25["nDCG@10"], abs=1e-12)
    qids = sorted(contriever.per_query)
    reference = stats.ttest_rel(
        [contriever.per_query[q]["nDCG@10"] for q in qids], [bm25.per_query[q]["nDCG@10"] for q in qids]
    )
    assert p == pytest.approx(reference.pvalue)
    assert 0.0 < p < 1.0


def test_format_table_aligns_columns():
    rows = [
        {"system": "bm25", "nDCG@10": 0.51874, "queries": 43},
        {"system": "contriever", "nDCG@10": 0.6311},
    ]
    assert format_table(rows) == "\n".join(
        [
            "system      nDCG@10  queries",
            "----------  -------  -------",
            "bm25         0.5187       43",
            "contriever   0.6311",
        ]
    )
    assert format_table(rows, ["nDCG@10"], floatfmt=".2f").splitlines()[2] == "   0.52"
    preformatted = [{"m": "0.5"}, {"m": "10.25"}, {"m": "n/a"}, {"m": "1.0"}]
    assert format_table(preformatted[:2]).splitlines()[2:] == ["  0.5", "10.25"]  # numeric strings: right
    assert format_table(preformatted).splitlines()[2:] == ["0.5", "10.25", "n/a", "1.0"]  # mixed: left
    with pytest.raises(EvaluationError, match="list of dicts"):
        format_table({"a": 1})


def test_compare_table_marks_significant_differences(dl19_results):
    table = compare_table(dl19_results, baseline="bm25.top100")
    lines = table.splitlines()
    assert lines[0].split() == ["system", "nDCG@10", "RR@10", "queries"]
    bm25_line = next(line for line in lines if line.startswith("bm25.top100"))
    contriever_line = next(line for line in lines if line.startswith("contriever.top100"))
    assert "0.5187" in bm25_line and "*" not in bm25_line
    _, p = paired_test(dl19_results["contriever.top100"], dl19_results["bm25.top100"], "nDCG@10")
    assert ("0.6311*" in contriever_line) == (p < 0.05)
    assert lines[-1].startswith("* paired t-test against 'bm25.top100'")
    with pytest.raises(EvaluationError, match="baseline 'nope'"):
        compare_table(dl19_results, baseline="nope")
