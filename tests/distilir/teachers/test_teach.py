"""``teach()``: the one library call from candidates to a store (the CLI and benchmarks use it).

Uses the FAKE hash-based teacher of conftest.py (a test double, not a model) over real scifact ids."""

from __future__ import annotations

import pytest

from distilir.data import load_dataset
from distilir.teachers import TeacherError, TeacherStore, rank_candidates, teach


def test_rank_candidates_orders_scores_and_keeps_lists():
    got = rank_candidates({"q": {"b": 1.0, "a": 1.0, "c": 3.0}, "r": ["z", "y"]}, depth=2)
    assert got == {"q": ["c", "b"], "r": ["z", "y"]}  # ties as trec_eval breaks them: descending id
    with pytest.raises(TeacherError):
        rank_candidates({"q": ["a"]}, depth=0)


def test_one_ranking_rule_the_file_rank_is_the_candidate_rank(tmp_path):
    """Ties ranked the same way by the TREC writer, the candidate lists and the training lists."""
    from distilir.data.trec import write_run
    from distilir.training.data import TrainingList

    run = {"q": {"b": 1.0, "a": 1.0, "c": 3.0, "d": 1.0}}
    write_run(run, tmp_path / "r.trec")
    file_order = [line.split()[2] for line in (tmp_path / "r.trec").read_text().splitlines()]
    lst = TrainingList("q", "query", tuple(run["q"]), ("x",) * 4, tuple(run["q"].values()))
    assert (
        rank_candidates(run)["q"]
        == file_order
        == [lst.doc_ids[j] for j in lst.ranked()]
        == ["c", "d", "b", "a"]
    )


def test_teach_scores_resumes_and_refuses_foreign_ids(tmp_path, fake_teacher_cls):
    ds = load_dataset("scifact")
    qids = sorted(ds.queries("test"))[:5]
    docs = sorted(ds.corpus())[:8]
    cands = {q: {d: float(i) for i, d in enumerate(docs)} for q in qids}
    teacher = fake_teacher_cls()
    _, stats = teach(ds, cands, teacher, tmp_path / "s", depth=4, progress=False)
    assert stats["scored"] == 20 and stats["fingerprint"] == teacher.fingerprint
    with TeacherStore.open(tmp_path / "s") as store:
        assert list(store.get(qids[0])) == docs[::-1][:4]  # best candidate first
    _, again = teach(ds, cands, teacher, tmp_path / "s", depth=4, progress=False)
    assert again["scored"] == 0 and again["skipped"] == 20
    with pytest.raises(TeacherError, match="not queries of"):
        teach(ds, {"nope": docs}, teacher, tmp_path / "t", progress=False)
    with pytest.raises(TeacherError, match="not in scifact's corpus"):
        teach(ds, {qids[0]: ["no-such-doc"]}, teacher, tmp_path / "u", progress=False)
    assert not (tmp_path / "t").exists() and not (tmp_path / "u").exists()  # nothing half-written
