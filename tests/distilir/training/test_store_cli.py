"""`distilir train` from a YAML file over a real TeacherStore.

The store is filled by a FAKE deterministic teacher (the lexical one of conftest.py, wrapped in the
Teacher protocol) so that the test needs no neural teacher; the store, the trainer, the student and
the CLI are the real ones."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from distilir.data.trec import write_run
from distilir.teachers.base import BaseTeacher
from distilir.teachers.store import TeacherStore
from distilir.training import add_train_parser, load_training_lists
from distilir.training.config import DataConfig


class FakeLexicalTeacher(BaseTeacher):
    """FAKE teacher for tests only: the lexical scoring function of conftest.py as a Teacher."""

    name = "fake-lexical"
    score_type = "normalized"

    def __init__(self, fn) -> None:
        self.fn = fn

    def score_many(self, queries, docs) -> list[list[float]]:
        return [[self.fn(q, d) for d in ds] for q, ds in zip(queries, docs, strict=True)]

    def get_config_dict(self) -> dict[str, Any]:
        return {"kind": "fake-lexical", "version": 1}


@pytest.fixture(scope="module")
def store_path(scifact, tmp_path_factory, lexical_teacher):
    path = tmp_path_factory.mktemp("store") / "teacher"
    queries, qrels = scifact.queries("train"), scifact.qrels("train")
    ids = sorted(scifact.corpus())
    qids = sorted(queries)[:6]
    candidates = {q: list(qrels[q]) + ids[10 * k : 10 * k + 4] for k, q in enumerate(qids)}
    teacher = FakeLexicalTeacher(lexical_teacher)
    with TeacherStore.open(path, teacher, candidate_source={"test": "fake"}) as store:
        store.score(teacher, queries, scifact.corpus(), candidates, progress=False)
    return path


def test_lists_come_from_the_store_with_its_fingerprint(store_path, data_dir, lexical_teacher):
    lists, teacher, info = load_training_lists(
        DataConfig(teacher_store=str(store_path), dataset="scifact", split="train"), data_dir=data_dir
    )
    assert len(lists) == 6 and info["queries_with_lists"] == 6
    assert teacher["fingerprint"] == TeacherStore.open(store_path).fingerprint
    assert teacher["manifest"]["score_type"] == "normalized"
    for lst in lists:
        assert list(lst.scores) == [lexical_teacher(lst.query, d) for d in lst.docs]


def test_distilir_train_from_yaml_over_a_teacher_store(store_path, scifact, data_dir, tmp_path, capsys):
    # evaluation on other train queries than the 6 distilled: rerank a small candidates file
    qrels = scifact.qrels("train")
    eval_qids = sorted(scifact.queries("train"))[:9]  # 6 training queries + 3 others
    write_run(
        {q: {d: 1.0 for d in list(qrels[q]) + ["4983", "5836"]} for q in eval_qids}, tmp_path / "c.trec"
    )
    (tmp_path / "train.yaml").write_text(f"""
student: {{kind: bi_encoder, model: all-MiniLM-L6-v2, max_length: 32}}
losses: [{{name: margin_mse}}]
data: {{teacher_store: {store_path}, dataset: scifact, split: train, candidates_per_query: 3}}
optim: {{batch_size: 3, steps: 5, lr: 5.0e-5}}
eval: {{dataset: scifact, split: train, candidates: {tmp_path / "c.trec"}, exclude_training_queries: true}}
output_dir: {tmp_path / "run"}
""")
    parser = argparse.ArgumentParser(prog="distilir")
    parser.add_argument("--data-dir", default=None)
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "--data-dir",
            str(data_dir),
            "train",
            "--config",
            str(tmp_path / "train.yaml"),
            "--optim.steps",
            "2",
            "--progress",
            "false",
        ]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and set(summary["metrics"]) == {"nDCG@10", "RR@10", "R@100"}

    manifest = json.loads((tmp_path / "run" / "student" / "manifest.json").read_text())
    assert manifest["teacher"]["fingerprint"] == TeacherStore.open(store_path).fingerprint
    assert manifest["teacher"]["manifest"]["teacher"]["name"] == "fake-lexical"
    assert manifest["data"]["lists"] == 6 and manifest["training_config"]["optim"]["steps"] == 2
    assert manifest["metrics"]["evaluation"]["queries"] == 3  # the training queries were left out
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "steps: 2" in config
