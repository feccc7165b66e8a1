"""Fixtures of the training tests: tiny real training lists from SciFact.

The teacher here is a FAKE, deterministic lexical teacher (10 x the fraction of query words found in
the document), used only to give the trainer real texts with plausible, reproducible scores without
running a neural teacher in the fast suite. Nothing under test is mocked: the students are real
MiniLM / SPLADE models and the losses are distilir's.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from distilir.training import TrainingList


def fake_lexical_teacher(query: str, doc: str) -> float:
    """FAKE teacher for tests: 10 * |query words in doc| / |query words|."""
    words = set(re.findall(r"\w+", query.lower()))
    return 10.0 * len(words & set(re.findall(r"\w+", doc.lower()))) / max(1, len(words))


@pytest.fixture(scope="session")
def lexical_teacher():
    """The FAKE lexical teacher function (see the module docstring)."""
    return fake_lexical_teacher


@pytest.fixture(scope="session")
def scifact(data_dir):
    from distilir.data import load_dataset

    return load_dataset("scifact", data_dir=data_dir)


@pytest.fixture(scope="session")
def tiny_lists(scifact) -> list[TrainingList]:
    """8 SciFact train queries, each with its judged documents plus 7 seeded random ones (<= 9 docs)."""
    queries, qrels, corpus = scifact.queries("train"), scifact.qrels("train"), scifact.corpus()
    ids = sorted(corpus)
    rng = np.random.default_rng(0)
    lists = []
    for qid in sorted(queries)[:8]:
        docs = list(
            dict.fromkeys(list(qrels[qid]) + [ids[i] for i in rng.choice(len(ids), 7, replace=False)])
        )
        texts = [corpus[d].full_text for d in docs]
        scores = [fake_lexical_teacher(queries[qid].text, t) for t in texts]
        lists.append(TrainingList(qid, queries[qid].text, tuple(docs), tuple(texts), tuple(scores)))
    return lists


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Train with one torch thread in these tests: on the shared 2-core machine two threads contending
    with other processes made a MiniLM step ~5x slower than one. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
