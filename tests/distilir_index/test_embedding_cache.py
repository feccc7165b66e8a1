"""The machine's one document-embedding cache: keyed by what changes a document's vector, filled and
read by DenseEncoder (every dense index build), refusing a folder of the other kind."""

import numpy as np
import pytest
from distilir_index.dense import DenseIndex
from distilir_index.embedding_cache import (
    EmbeddingCache,
    EmbeddingCacheError,
    document_cache_key,
    resolve_cache_dir,
)
from distilir_index.encoders import DenseEncoder

DOCS = [
    "aspirin reduces the risk of heart attack",
    "BM25 is a ranking function used by search engines",
    "the mitochondria is the powerhouse of the cell",
    "aspirin reduces the risk of heart attack",  # a duplicate text is encoded once
]


def test_refuses_a_folder_of_the_other_kind(tmp_path):
    EmbeddingCache(tmp_path, kind="dense")
    with pytest.raises(EmbeddingCacheError, match="'dense' embedding cache.*'sparse'"):
        EmbeddingCache(tmp_path, kind="sparse")


def test_root_from_argument_environment_or_off(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_EMBEDDING_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir("off") is None
    monkeypatch.setenv("DISTILIR_EMBEDDING_CACHE", "off")
    assert resolve_cache_dir() is None
    monkeypatch.delenv("DISTILIR_EMBEDDING_CACHE")
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path / "root"))
    assert resolve_cache_dir() == tmp_path / "root" / "embeddings"


def test_key_changes_with_every_setting_that_changes_a_vector():
    base = {"max_length": 256, "prompt": None, "normalize": True}
    key = document_cache_key("sha256:a", **base)
    assert key == document_cache_key("sha256:a", **base)
    assert key != document_cache_key("sha256:b", **base)
    assert key != document_cache_key("sha256:a", **{**base, "max_length": 128})
    assert key != document_cache_key("sha256:a", **{**base, "prompt": "passage: "})
    assert key != document_cache_key("sha256:a", **{**base, "normalize": False})
    assert key != document_cache_key("sha256:a", **base, kind="sparse")


def test_encoder_encodes_each_text_once_per_machine(minilm, minilm_path, tmp_path):
    reference = DenseEncoder(minilm_path, backend="torch", cache_dir="off").encode_documents(DOCS)
    first = DenseEncoder(minilm_path, backend="torch", cache_dir=tmp_path)
    got = first.encode_documents(DOCS)
    np.testing.assert_allclose(got, reference, atol=1e-6)
    assert first.document_cache.misses == 3 and first.document_cache.hits == 1
    assert len(list(first.document_cache.directory.glob("part-*.npz"))) == 1

    # a new encoder (a new process in practice) reads the folder and encodes nothing it has seen
    second = DenseEncoder(minilm_path, backend="torch", cache_dir=tmp_path)
    np.testing.assert_array_equal(second.encode_documents(DOCS[:3]), got[:3])
    assert second.document_cache.loaded == 3 and second.document_cache.misses == 0
    assert second.encode_documents([]).shape == (0, 384)

    # another setting that changes vectors is another folder, never a wrong hit
    shorter = DenseEncoder(minilm_path, backend="torch", max_length=8, cache_dir=tmp_path)
    shorter.encode_documents(DOCS[:1])
    assert shorter.document_cache.misses == 1
    assert shorter.document_cache.directory != first.document_cache.directory

    # a model held in memory (maybe being trained) is never cached
    assert DenseEncoder(minilm, cache_dir=tmp_path).document_cache is None


def test_rebuilding_an_index_with_another_factory_encodes_nothing(minilm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_EMBEDDING_CACHE", str(tmp_path))
    ids = [f"d{i}" for i in range(3)]
    flat = DenseIndex(DenseEncoder(minilm_path, backend="torch"), index="flat")
    flat.add(ids, DOCS[:3])

    encoder = DenseEncoder(minilm_path, backend="torch")
    calls = []
    real = encoder._encode
    monkeypatch.setattr(encoder, "_encode", lambda *a, **k: calls.append(a) or real(*a, **k))
    hnsw = DenseIndex(encoder, index="hnsw")
    hnsw.add(ids, DOCS[:3])
    assert calls == []  # every document came from the cache
    np.testing.assert_allclose(hnsw.vectors(), flat.vectors(), atol=1e-6)
    hits = hnsw.search(["heart attack aspirin"], k=1)
    assert hits[0][0].id == "d0"
