"""Backend (no HTTP): the registry, mode selection, atomic reload, reranker and embedder adapters."""

from __future__ import annotations

import numpy as np
import pytest
from distilir_index.retriever import Retriever
from distilir_index.service.backend import Backend, as_reranker, load_retriever
from distilir_index.service.errors import BadRequest, InvalidModel, NotConfigured, UnknownIndex, UnknownModel


@pytest.fixture
def backend(bm25_path):
    b = Backend(max_k=30)
    b.load("first", bm25_path)
    b.load("second", bm25_path)
    return b


def test_registry_and_resolution(backend, bm25_path):
    assert backend.names == ["first", "second"] and len(backend) == 2
    assert backend.resolve()[0] == "first"  # the default is the first registered
    assert backend.resolve(mode="bm25")[0] == "first"
    assert backend.resolve("second")[0] == "second"
    with pytest.raises(UnknownIndex, match="no loaded index of kind 'dense'"):
        backend.resolve(mode="dense")
    with pytest.raises(BadRequest, match="is a 'bm25' index"):
        backend.resolve("second", mode="dense")
    with pytest.raises(UnknownIndex, match=r"no index named 'x'; loaded indexes: \['first', 'second'\]"):
        backend.get("x")
    assert backend.get("first").max_k == 30
    assert backend.get_config_dict() == {
        "max_k": 30,
        "indexes": {"first": str(bm25_path), "second": str(bm25_path)},
        "reranker": None,
        "embedder": None,
    }
    info = backend.info("first")
    assert info["name"] == "first" and info["default"] and info["path"] == str(bm25_path)
    with pytest.raises(UnknownIndex, match="no index is loaded"):
        Backend().resolve()


def test_reload_swaps_and_the_old_retriever_keeps_working(backend, queries):
    before = backend.get("first")
    expected = before.search(queries[0], k=5)
    old, new = backend.reload("first")
    assert old.retriever is before and new.retriever is backend.get("first") and new.retriever is not before
    assert before.search(queries[0], k=5) == expected  # a request holding the old one finishes on it
    assert backend.get("first").search(queries[0], k=5) == expected


def test_failed_reload_keeps_the_old_index(backend, tmp_path):
    from distilir_index.base import ManifestError

    before = backend.get("first")
    with pytest.raises(ManifestError):
        backend.reload("first", path=tmp_path)
    with pytest.raises(BadRequest, match="cannot read the path"):
        backend.reload("first", path="bad\x00path")
    assert backend.get("first") is before
    in_memory = Backend()
    in_memory.add("mem", before.index)
    assert isinstance(in_memory.get("mem"), Retriever)
    with pytest.raises(BadRequest, match="without a path"):
        in_memory.reload("mem")


def test_model_overrides(bm25_path, dense_path):
    with pytest.raises(BadRequest, match="has no query encoder"):
        load_retriever(bm25_path, model="all-MiniLM-L6-v2")
    with pytest.raises(InvalidModel, match="cannot load the query encoder"):
        load_retriever(dense_path, model="/nonexistent/model-folder")


def test_reranker_shapes():
    class Teacher:  # distilir's Teacher protocol: score(query, docs) -> list[float]
        def score(self, query, docs):
            return [len(d) for d in docs]

    class CrossEncoderLike:  # sentence-transformers CrossEncoder: predict(pairs) -> array
        def predict(self, pairs, show_progress_bar=False):
            return np.array([[len(q) - len(d)] for q, d in pairs])

    assert as_reranker(Teacher())("q", ["a", "abc"]) == [1.0, 3.0]
    assert as_reranker(CrossEncoderLike())("qq", ["a", "abc"]) == [1.0, -1.0]
    assert as_reranker(lambda q, docs: [0.5] * len(docs))("q", ["a"]) == [0.5]
    with pytest.raises(TypeError, match="score"):
        as_reranker(42)

    b = Backend(reranker=Teacher(), reranker_name="len")
    assert b.rerank("q", ["aa", "a"]) == [2.0, 1.0]
    with pytest.raises(UnknownModel, match="'other'"):
        b.rerank("q", ["a"], model="other")
    with pytest.raises(NotConfigured, match="rerank_model"):
        Backend().rerank("q", ["a"])


def test_embed_with_a_dense_index_or_a_configured_encoder(dense_path, dense_encoder):
    b = Backend()
    with pytest.raises(NotConfigured, match="embedding_model"):
        b.embed(["x"])
    b.load("dense", dense_path)
    vectors, name, tokens = b.embed(["heart disease", "gene expression"], input_type="query")
    assert name == "dense" and vectors.shape == (2, 384) and tokens > 4
    np.testing.assert_allclose(
        vectors, dense_encoder.encode_queries(["heart disease", "gene expression"]), rtol=1e-5, atol=1e-6
    )
    b.set_embedder(dense_encoder, "minilm")
    assert b.embed(["x"])[1] == "minilm" and b.embed(["x"], model="dense")[1] == "dense"
    with pytest.raises(UnknownModel, match=r"available: \['minilm', 'dense'\]"):
        b.embed(["x"], model="nope")
