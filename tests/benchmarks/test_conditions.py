"""The benchmark conditions: every file parses, and the fast CI subset reproduces its expected
scores (a regression in effectiveness fails the build)."""

import pytest

from benchmarks.runner import ConditionError, load_conditions, run_condition


def test_all_condition_files_parse_and_ids_are_unique():
    conditions = load_conditions()
    assert len(conditions) >= 10
    assert len({c.id for c in conditions}) == len(conditions)
    assert any(c.ci for c in conditions)


def test_a_typo_in_a_condition_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: scifact\nconditions:\n  - name: x\n    pipeline: {type: frist_stage}\n")
    with pytest.raises(ConditionError, match="pipeline.type must be one of"):
        load_conditions([bad])
    bad.write_text("dataset: scifact\nconditions:\n  - name: x\n    pipelin: {type: first_stage}\n")
    with pytest.raises(ConditionError, match="unknown keys"):
        load_conditions([bad])


CI = [c for c in load_conditions() if c.ci]


@pytest.mark.parametrize("condition", CI, ids=[c.id for c in CI])
def test_ci_condition_reproduces_expected_scores(condition, data_dir, tmp_path):
    result = run_condition(condition, data_dir=str(data_dir), cache_dir=tmp_path, measure_latency=5)
    assert condition.expected, "a CI condition must guard at least one metric"
    for measure, ours, expected, tol, ok in result.checks:
        assert ok, f"{condition.id} {measure}: {ours:.4f}, expected {expected:.4f} ± {tol}"


def test_a_collection_that_is_not_here_is_reported_not_failed(monkeypatch, capsys, data_dir):
    """MS MARCO / TREC DL full-collection conditions go through ir_datasets: without their files (and
    with downloads failing: an unreachable proxy stands in for "no internet") a full run skips them
    with instructions, while naming one explicitly fails fast with exit code 3."""
    from benchmarks.runner import main

    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    ids = {c.id for c in load_conditions()}
    assert {
        "msmarco-passage/dev/small/bm25",
        "msmarco-passage/trec-dl-2019/judged/bm25",
        "msmarco-passage/trec-dl-2020/judged/bm25",
    } <= ids

    code = main(["--dataset", "msmarco-passage/trec-dl-2020/judged", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 3
    assert "UNAVAILABLE" in out and "register_local" in out and "IR_DATASETS_HOME" in out


def test_full_collection_conditions_get_their_collection_conventions():
    from distilir.conventions import conventions_for

    by_id = {c.id: c for c in load_conditions()}
    dev = conventions_for(by_id["msmarco-passage/dev/small/bm25"].dataset)
    assert dev.measures[0] == "RR@10" and dev.relevance_level == 1
    for year in ("2019", "2020"):
        dl = conventions_for(by_id[f"msmarco-passage/trec-dl-{year}/judged/bm25"].dataset)
        assert dl.relevance_level == 2  # binary measures count grade >= 2, nDCG uses the grades


def test_compare_to_adds_a_paired_test_against_the_named_condition(data_dir, tmp_path):
    """Two real BM25 runs on vaswani (different k1): the report's row for the one naming the other holds
    the per-query difference, the paired t-test and the wins/ties/losses computed here by hand."""
    from scipy.stats import ttest_rel

    from benchmarks.report import write_markdown

    f = tmp_path / "pair.yaml"
    f.write_text(
        "dataset: vaswani\nconditions:\n"
        "  - name: base\n    pipeline: {type: first_stage, retriever: bm25, k1: 0.9, b: 0.4}\n"
        "  - name: other\n    pipeline: {type: first_stage, retriever: bm25, k1: 2.0, b: 0.9}\n"
        "    compare_to: base\n"
    )
    base, other = load_conditions([f])
    assert other.compare_to == "vaswani/base" and base.compare_to is None
    rb, ro = (
        run_condition(c, data_dir=str(data_dir), cache_dir=tmp_path, measure_latency=2) for c in (base, other)
    )
    qids = sorted(rb.per_query)
    xs = [ro.per_query[q]["nDCG@10"] for q in qids]
    ys = [rb.per_query[q]["nDCG@10"] for q in qids]
    assert xs != ys
    pairs = list(zip(xs, ys, strict=True))
    wins, losses = sum(x > y for x, y in pairs), sum(x < y for x, y in pairs)
    expected = (
        f"| vaswani/other | vaswani/base | {ro.metrics['nDCG@10']:.4f} | {rb.metrics['nDCG@10']:.4f} "
        f"| {sum(xs) / len(xs) - sum(ys) / len(ys):+.4f} | {ttest_rel(xs, ys).pvalue:.3g} "
        f"| {wins}/{len(qids) - wins - losses}/{losses} |"
    )
    report = write_markdown([rb, ro], tmp_path / "report", wall_s=1.0).read_text()
    assert "## Against a named baseline" in report
    assert expected in report.splitlines()

    f.write_text(f.read_text().replace("compare_to: base", "compare_to: bsae"))
    with pytest.raises(ConditionError, match="compare_to 'bsae'.*not a condition of dataset vaswani"):
        load_conditions([f])
