"""Training lists, candidate selection, batches and the resumable sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distilir.training import DataError, ListSampler, TrainingList, read_lists_jsonl, write_lists_jsonl
from distilir.training.data import attach_positives, collate, negatives_rng, select_candidates


def _list(n=6, qid="q1"):
    # scores chosen so the teacher order is d2 > d0 > d4 > d1 > d5 > d3
    scores = (5.0, 2.0, 9.0, -1.0, 3.0, 0.5)[:n]
    ids = tuple(f"d{i}" for i in range(n))
    return TrainingList(qid, f"query {qid}", ids, tuple(f"text of {d}" for d in ids), scores)


def test_sampler_epochs_are_permutations_and_resume_exactly():
    s = ListSampler(10, seed=3)
    first = s.next_indices(7)
    state = s.state_dict()
    assert state["epoch"] == 0 and state["position"] == 7
    rest = s.next_indices(13)  # crosses into epoch 1 and ends at its position 10 = next epoch start
    epoch0 = [i for e, i in first + rest if e == 0]
    epoch1 = [i for e, i in first + rest if e == 1]
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # a new order every epoch
    assert epoch0 == np.random.default_rng([3, 0]).permutation(10).tolist()

    resumed = ListSampler(10, seed=3)
    resumed.load_state_dict(state)
    assert resumed.next_indices(13) == rest
    assert ListSampler(10, seed=4).next_indices(10) != ListSampler(10, seed=3).next_indices(10)


def test_sampler_refuses_state_of_other_data():
    state = ListSampler(10, seed=3).state_dict()
    with pytest.raises(DataError, match="num_items"):
        ListSampler(11, seed=3).load_state_dict(state)


def test_distributed_shards_are_disjoint_and_cover_the_epoch():
    shards = [ListSampler(9, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [[i for _, i in s.next_indices(3)] for s in shards]
    assert sorted(sum(seen, [])) == list(range(9))
    assert np.random.default_rng([1, 0]).permutation(9)[1::3].tolist() == seen[1]


def test_select_candidates_teacher_positive_and_top_negatives():
    lst = _list()
    idx = select_candidates(lst, 3, negatives="top")
    assert [lst.doc_ids[j] for j in idx] == ["d2", "d0", "d4"]
    # fewer candidates than N: every document, best first
    assert [lst.doc_ids[j] for j in select_candidates(lst, 10, negatives="top")] == [
        "d2",
        "d0",
        "d4",
        "d1",
        "d5",
        "d3",
    ]


def test_select_candidates_qrels_positive():
    lst = attach_positives([_list()], {"q1": {"d1": 1, "d5": 2, "d3": 0}})[0]
    assert lst.positives == frozenset({"d1", "d5"})
    idx = select_candidates(lst, 3, positives="qrels", negatives="top")
    assert lst.doc_ids[idx[0]] == "d1"  # the judged document the teacher scores highest
    assert [lst.doc_ids[j] for j in idx[1:]] == ["d2", "d0"]
    with pytest.raises(DataError, match="no judged relevant"):
        select_candidates(_list(), 3, positives="qrels")


def test_random_negatives_are_seeded_per_epoch_and_list():
    lst = _list()
    draw = lambda epoch: select_candidates(lst, 3, rng=negatives_rng(42, epoch, 0))  # noqa: E731
    assert draw(0) == draw(0)
    draws = {tuple(draw(e)) for e in range(8)}
    assert len(draws) > 1 and all(d[0] == 2 for d in draws)  # positive fixed, negatives vary
    for d in draws:
        negs = list(d[1:])
        assert len(set(negs)) == 2 and 2 not in negs
        assert negs == sorted(negs, key=lambda j: -lst.scores[j])  # kept in teacher order


def test_collate_pads_and_masks():
    a, b = _list(6, "qa"), _list(2, "qb")
    batch = collate(
        [(a, select_candidates(a, 4, negatives="top")), (b, select_candidates(b, 4, negatives="top"))], 4
    )
    assert batch.teacher_scores.shape == (2, 4) and batch.group_size == 4
    assert batch.teacher_scores[0].tolist() == [9.0, 5.0, 3.0, 2.0]
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.teacher_scores[1, :2].tolist() == [5.0, 2.0]
    assert batch.docs[1] == ["text of d0", "text of d1", "", ""]
    assert batch.queries == ["query qa", "query qb"] and batch.teacher_scores.dtype == torch.float32


def test_training_list_validation():
    with pytest.raises(DataError, match="same length"):
        TrainingList("q", "x", ("a", "b"), ("ta",), (1.0, 2.0))
    with pytest.raises(DataError, match="twice"):
        TrainingList("q", "x", ("a", "a"), ("t", "t"), (1.0, 2.0))
    with pytest.raises(DataError, match="NaN"):
        TrainingList("q", "x", ("a", "b"), ("t", "u"), (1.0, float("nan")))
    with pytest.raises(DataError, match="lacks"):
        TrainingList.from_mapping({"qid": "q", "query": "x"})


def test_lists_jsonl_round_trip(tmp_path):
    lists = [_list(6, "q1"), _list(3, "q2")]
    path = write_lists_jsonl(lists, tmp_path / "lists.jsonl", teacher={"fingerprint": "abc", "name": "fake"})
    assert read_lists_jsonl(path) == lists
    side = json.loads((tmp_path / "lists.jsonl.manifest.json").read_text())
    assert side["lists"] == 2 and side["teacher"]["fingerprint"] == "abc"
    (tmp_path / "bad.jsonl").write_text('{"qid": "q"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_lists_jsonl(tmp_path / "bad.jsonl")
