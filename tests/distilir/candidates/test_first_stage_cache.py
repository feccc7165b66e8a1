"""build_index's on-disk cache: reused for the same corpus and weights, rebuilt when a model folder's
weights change in place (a student re-trained or re-saved at the same path)."""

from __future__ import annotations

import shutil
from itertools import islice

import pytest
import torch
from distilir_index import read_manifest
from distilir_index.models import fingerprint_folder

from distilir.candidates import FirstStageConfig, build_index
from distilir.candidates import first_stage as fs
from distilir.data import BeirDataset, LocalDataset


@pytest.fixture(scope="module")
def tiny(data_dir, tmp_path_factory) -> LocalDataset:
    """The first 24 TIME articles and 3 of its queries, as explicit files."""
    time = BeirDataset(data_dir / "time")
    folder = tmp_path_factory.mktemp("tiny")
    docs = list(islice(time.iter_corpus(), 24))
    (folder / "corpus.tsv").write_text(
        "id\ttitle\ttext\n" + "".join(f"{d.id}\t\t{' '.join(d.text.split()[:80])}\n" for d in docs)
    )
    queries = list(time.queries("test").values())[:3]
    (folder / "queries.tsv").write_text("".join(f"{q.id}\t{q.text}\n" for q in queries))
    (folder / "qrels.tsv").write_text(f"{queries[0].id}\t0\t{docs[0].id}\t1\n")
    return LocalDataset(folder / "corpus.tsv", folder / "queries.tsv", folder / "qrels.tsv", name="tiny")


def test_a_model_retrained_in_place_gets_a_new_index(tiny, minilm_path, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    student = tmp_path / "student"
    shutil.copytree(minilm_path, student)
    builds = []
    real = fs._index_docs
    monkeypatch.setattr(fs, "_index_docs", lambda *a, **k: (builds.append(1), real(*a, **k)))
    config = FirstStageConfig("dense", model=str(student))
    cache = tmp_path / "cache"

    first = build_index(tiny, config, cache_dir=cache)
    again = build_index(tiny, config, cache_dir=cache)
    assert len(builds) == 1, "same corpus, same weights: the cached index is loaded"
    query = next(iter(tiny.queries("test").values())).text
    assert [h.id for h in again.search([query], k=5)[0]] == [h.id for h in first.search([query], k=5)[0]]

    # "Re-train" the student in place: same folder, other weights.
    model = SentenceTransformer(str(student), device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save(str(student))
    del model

    rebuilt = build_index(tiny, config, cache_dir=cache)  # used to raise EncoderMismatch
    assert len(builds) == 2
    (path,) = [p for p in cache.iterdir() if (p / "manifest.json").is_file()]
    assert read_manifest(path)["encoder"]["fingerprint"] == fingerprint_folder(student)
    assert len(rebuilt.search([query], k=5)[0]) == 5
