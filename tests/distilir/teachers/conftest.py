"""Fixtures of the teacher tests: a small real collection slice and a FAKE teacher for store tests.

The fake teacher is NOT a model: it is a deterministic hash-based scorer that counts its calls, used
only where the teacher's numbers do not matter (the score store's bookkeeping). Real teachers are
tested against their references in their own test files."""

from __future__ import annotations

import gzip
import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from distilir.teachers.base import BaseTeacher


class FakeTeacher(BaseTeacher):
    """FAKE teacher (test double): score = a hash of (query, doc) mapped to [-5, 5). Counts every pair
    it scores in ``self.scored`` so tests can assert what was (not) scored."""

    score_type = "logit"

    def __init__(
        self,
        name: str = "fake",
        salt: str = "",
        fail_on_call: int | None = None,
        interrupt_on_call: int | None = None,
    ) -> None:
        self.name = name
        self.salt = salt
        self.scored: list[tuple[str, str]] = []
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.interrupt_on_call = interrupt_on_call

    @staticmethod
    def value(query: str, doc: str, salt: str = "") -> float:
        h = int.from_bytes(sha256(f"{salt}\x00{query}\x00{doc}".encode()).digest()[:8], "big")
        return h / 2**64 * 10 - 5

    def score_many(self, queries, docs):
        self.calls += 1
        if self.interrupt_on_call == self.calls:
            raise KeyboardInterrupt
        if self.fail_on_call == self.calls:
            return [[float("nan")] * len(d) for d in docs]
        out = []
        for q, ds in zip(queries, docs, strict=True):
            out.append([self.value(q, d, self.salt) for d in ds])
            self.scored.extend((q, d) for d in ds)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"kind": "fake", "name": self.name, "salt": self.salt, "score_type": self.score_type}


@pytest.fixture
def fake_teacher_cls():
    return FakeTeacher


def read_beir(folder: Path, n_queries: int | None = None, split: str = "test"):
    """queries {qid: text} (judged in ``split``), corpus {docid: title + text}, qrels."""
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    queries = {}
    with gzip.open(folder / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["_id"] in qrels:
                queries[r["_id"]] = r["text"]
    corpus = {}
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            corpus[r["_id"]] = f"{r['title']} {r['text']}".strip() if r.get("title") else r["text"]
    if n_queries is not None:
        queries = dict(list(queries.items())[:n_queries])
        qrels = {q: qrels[q] for q in queries}
    return queries, corpus, qrels


@pytest.fixture(scope="session")
def beir_reader():
    """The ``read_beir(folder, n_queries=None, split="test")`` helper."""
    return read_beir


@pytest.fixture(scope="session")
def scifact(data_dir):
    """The scifact test split: (queries, corpus, qrels)."""
    return read_beir(data_dir / "scifact")


@pytest.fixture(scope="session")
def small_lists(scifact):
    """20 scifact test queries, each with 12 candidates: its judged docs first, then a fixed slice of
    the corpus (deterministic), as (queries, docs, candidates, qrels)."""
    queries, corpus, qrels = scifact
    doc_ids = list(corpus)
    q20 = dict(list(queries.items())[:20])
    candidates = {}
    for i, q in enumerate(q20):
        judged = [d for d in qrels[q] if d in corpus]
        filler = [doc_ids[(i * 7 + j) % len(doc_ids)] for j in range(12)]
        candidates[q] = list(dict.fromkeys(judged + filler))[:12]
    docs = {d: corpus[d] for ds in candidates.values() for d in ds}
    return q20, docs, candidates, {q: qrels[q] for q in q20}
