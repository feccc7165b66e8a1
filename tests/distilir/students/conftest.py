"""Fixtures of the student tests: a tiny real batch from SciFact and models loaded once."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class TinyBatch:
    """Two SciFact train claims, each with its judged relevant abstract first, then two other abstracts."""

    queries: list[str]
    docs: list[list[str]]


@pytest.fixture(scope="session")
def scifact_batch(data_dir) -> TinyBatch:
    root = data_dir / "scifact"
    with open(root / "qrels" / "train.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if int(r["score"]) > 0]
    qrels: dict[str, str] = {}
    for r in rows:
        qrels.setdefault(r["query-id"], r["corpus-id"])
        if len(qrels) == 2:
            break
    queries: dict[str, str] = {}
    with gzip.open(root / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    wanted = set(qrels.values())
    docs: dict[str, str] = {}
    others: list[str] = []
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            text = f"{d['title']} {d['text']}".strip()
            if d["_id"] in wanted:
                docs[d["_id"]] = text
            elif len(others) < 4:
                others.append(text)
            if len(docs) == len(wanted) and len(others) == 4:
                break
    qids = list(qrels)
    return TinyBatch(
        queries=[queries[q] for q in qids],
        docs=[[docs[qrels[qids[0]]], others[0], others[1]], [docs[qrels[qids[1]]], others[2], others[3]]],
    )


@pytest.fixture(scope="session")
def splade_model(splade_path):
    """The packaged splade-tiny SparseEncoder, loaded once (tests that change it take a copy)."""
    from sentence_transformers import SparseEncoder

    return SparseEncoder(splade_path, device="cpu")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run these tests' forward/backward passes on one intra-op thread, restored afterwards.

    On the shared 2-core machine, two torch threads competing with other processes spin-wait and run
    10-20x slower than one (measured: MiniLM-L6 forward+backward on 6 x 32 tokens 8.2 s vs 0.6 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
