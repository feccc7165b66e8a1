"""MilvusIndex on Milvus Lite (embedded, a local .db file): dense search against our exact FAISS
DenseIndex, sparse search against the exact SparseIndex dot product, hybrid RRF against HybridIndex's
fusion of the same two lists, filters, save/load through load_index and input errors. Seeded random
vectors stand in for embeddings: which model made them does not matter to the index."""

from __future__ import annotations

import numpy as np
import pytest
from distilir_index import load_index
from distilir_index.base import IndexError_
from distilir_index.dense import DenseIndex
from distilir_index.hybrid import HybridIndex
from distilir_index.milvus import MilvusIndex, to_milvus_filter
from distilir_index.sparse import SparseIndex

N, D, Q = 600, 32, 25


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    ids = [f"d{i}" for i in range(N)]
    metas = [{"year": 2000 + i % 5, "lang": "en" if i % 3 else "de"} for i in range(N)]
    texts = [f"document {i}" for i in range(N)]
    vectors = unit(rng.normal(size=(N, D)))
    weights = [{f"t{j}": float(rng.gamma(1.0, 1.0)) for j in rng.choice(400, 12, replace=False)} for _ in ids]
    queries = unit(rng.normal(size=(Q, D)))
    q_weights = [
        {f"t{j}": float(rng.gamma(1.0, 1.0)) for j in rng.choice(400, 4, replace=False)} for _ in range(Q)
    ]
    dense = DenseIndex()
    dense.add(ids, texts, vectors=vectors, metadata=metas)
    sparse = SparseIndex()
    sparse.add(ids, texts, weights=weights, metadata=metas)
    return {"dense": dense, "sparse": sparse, "queries": queries, "q_weights": q_weights, "ids": ids}


@pytest.fixture(scope="module")
def milvus(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("milvus") / "lite.db"
    return MilvusIndex.export(path, "scifact_like", dense=data["dense"], sparse=data["sparse"])


def ranked(hits):
    return [[h.id for h in row] for row in hits]


def test_flat_dense_search_equals_exact_faiss(milvus, data):
    got = milvus.search(data["queries"], k=10)
    want = data["dense"].search(data["queries"], k=10)
    assert ranked(got) == ranked(want)
    np.testing.assert_allclose([h.score for h in got[0]], [h.score for h in want[0]], rtol=1e-5)
    assert got[0][0].text is not None and "year" in got[0][0].metadata


def test_sparse_search_equals_exact_dot_product(milvus, data):
    got = milvus.search(data["q_weights"], k=10)
    want = data["sparse"].search(data["q_weights"], k=10)
    assert ranked(got) == ranked(want)
    np.testing.assert_allclose([h.score for h in got[3]], [h.score for h in want[3]], rtol=1e-5)


def test_hybrid_rrf_equals_hybrid_index_fusion(milvus, data):
    depth, k = 20, 10
    columns = [{milvus.vocabulary.index(t): w for t, w in q.items()} for q in data["q_weights"]]
    got = milvus.search_vectors(data["queries"], columns, k, depth=depth)
    fusion = HybridIndex(data["dense"], data["sparse"], rrf_k=60, depth=depth)
    first = data["dense"].search(data["queries"], k=depth)
    second = data["sparse"].search(data["q_weights"], k=depth)
    want = [fusion.fuse(a, b, k) for a, b in zip(first, second, strict=True)]
    for g, w in zip(got, want, strict=True):
        # RRF scores are the formula's: 1/(60 + rank) summed over the two lists (same k constant)
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], rtol=1e-6)
        # documents agree except in the order of exact ties (HybridIndex breaks them by id)
        assert sorted((round(h.score, 6), h.id) for h in g if h.score > w[-1].score + 1e-6) == sorted(
            (round(h.score, 6), h.id) for h in w if h.score > w[-1].score + 1e-6
        )
    top = got[0][0]
    assert top.score == pytest.approx(
        sum(1 / (60 + r) for r, lst in ((i + 1, L) for L in (first[0], second[0]) for i, h in enumerate(L)
                                         if h.id == top.id)), rel=1e-6
    )  # fmt: skip


def test_filters_run_inside_milvus_like_our_prefilter(milvus, data):
    spec = {"year": {"$gte": 2003}, "lang": ["en"]}
    got = milvus.search(data["queries"], k=10, filters=spec)
    want = data["dense"].search(data["queries"], k=10, filters=spec)
    assert ranked(got) == ranked(want)
    assert ranked(milvus.search(data["queries"][:2], k=3, ids=["d1", "d2", "d3"])) == ranked(
        data["dense"].search(data["queries"][:2], k=3, ids=["d1", "d2", "d3"])
    )
    assert to_milvus_filter({"year": {"$gte": 2018, "$lt": 2021}, "lang": ["en", "de"]}) == (
        '(year >= 2018 and year < 2021) and (lang in ["en", "de"])'
    )


def test_hnsw_recall_within_tolerance(data, tmp_path):
    index = MilvusIndex(tmp_path / "h.db", "hnsw", dimension=D, dense_index="HNSW", ef_search=64)
    index.add(data["ids"], vectors=data["dense"]._vectors_at(np.arange(N)))
    got = index.search(data["queries"], k=10)
    want = data["dense"].search(data["queries"], k=10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(ranked(got), ranked(want), strict=True)])
    assert recall >= 0.95  # HNSW (M 32, ef 64) on 600 vectors; measured 1.0


def test_save_load_reconnects_with_manifest(milvus, data, tmp_path):
    milvus.save(tmp_path / "m")
    loaded = load_index(tmp_path / "m")
    assert isinstance(loaded, MilvusIndex) and len(loaded) == N
    manifest = __import__("json").loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["settings"]["collection"] == "scifact_like"
    assert set(manifest["source"]) == {"dense", "sparse"} and manifest["source"]["dense"]["kind"] == "dense"
    assert ranked(loaded.search(data["q_weights"][:3], k=5)) == ranked(
        milvus.search(data["q_weights"][:3], k=5)
    )


def test_bad_input_errors(milvus, data, tmp_path):
    with pytest.raises(ValueError, match="k must be a positive int"):
        milvus.search(data["queries"], k=0)
    with pytest.raises(ValueError, match=r"shape \[n, 32\]"):
        milvus.search(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="query strings need an encoder"):
        milvus.search(["a text query"])
    with pytest.raises(IndexError_, match="no Milvus translation"):
        milvus.search(data["queries"], filters={"year": {"$exists": True}})
    with pytest.raises(ValueError, match="needs a dense field"):
        MilvusIndex(tmp_path / "x.db", "empty")
    with pytest.raises(ValueError, match="collection must be a name"):
        MilvusIndex(tmp_path / "x.db", "bad-name", dimension=4)
    with pytest.raises(IndexError_, match="holds 32-d vectors, not 33-d"):
        MilvusIndex(milvus.uri, "scifact_like", dimension=D + 1)
