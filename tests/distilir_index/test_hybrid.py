"""Fusion against the formulas written out by hand, and HybridIndex over real sub-indexes: filters
pass through to both, save/load of the hybrid and its sub-folders."""

from __future__ import annotations

import numpy as np
import pytest
from distilir_index.base import read_manifest
from distilir_index.hybrid import HybridIndex, convex, rrf
from distilir_index.sparse import SparseIndex

# ---------------------------------------------------------------------------------------------------
# Plain-run fusion
# ---------------------------------------------------------------------------------------------------
RUN_A = {"q1": {"a": 9.0, "b": 5.0, "c": 1.0}, "q2": {"x": 1.0}}
RUN_B = {"q1": {"c": 0.9, "d": 0.5, "a": 0.1}}


def test_rrf_matches_the_formula():
    fused = rrf([RUN_A, RUN_B], k=60)
    # c is 3rd in A and 1st in B; a is 1st in A and 3rd in B; b only in A (2nd); d only in B (2nd)
    assert fused["q1"]["c"] == pytest.approx(1 / (60 + 3) + 1 / (60 + 1))
    assert fused["q1"]["a"] == pytest.approx(1 / (60 + 1) + 1 / (60 + 3))
    assert fused["q1"]["b"] == pytest.approx(1 / (60 + 2))
    assert fused["q1"]["d"] == pytest.approx(1 / (60 + 2))
    assert list(fused["q1"]) == ["a", "c", "b", "d"]  # a and c tie exactly: doc id decides
    assert fused["q2"] == {"x": pytest.approx(1 / 61)}  # a query only one run has
    assert rrf([RUN_A, RUN_B], k=10, depth=1)["q1"] == {
        "a": pytest.approx(1 / 11),
        "c": pytest.approx(1 / 11),
    }


def test_convex_minmax_by_hand():
    fused = convex([RUN_A, RUN_B], weights=[0.7, 0.3], normalization="minmax")
    # min-max per query and run: A: a=1, b=(5-1)/8=0.5, c=0; B: c=1, d=(0.5-0.1)/0.8=0.5, a=0
    # missing documents take the run's minimum normalised score (0 here)
    expected = {
        "a": 0.7 * 1 + 0.3 * 0,
        "b": 0.7 * 0.5 + 0.3 * 0,
        "c": 0.7 * 0 + 0.3 * 1,
        "d": 0.7 * 0 + 0.3 * 0.5,
    }
    assert fused["q1"] == pytest.approx(expected)
    assert list(fused["q1"]) == ["a", "b", "c", "d"]
    assert fused["q2"] == {"x": 0.0}  # a single score normalises to 0


def test_convex_zscore_and_none_by_hand():
    a = np.array([9.0, 5.0, 1.0])
    za = dict(zip("abc", (a - a.mean()) / a.std(), strict=True))
    b = np.array([0.9, 0.5, 0.1])
    zb = dict(zip("cda", (b - b.mean()) / b.std(), strict=True))
    fused = convex([RUN_A, RUN_B], weights=[1, 1], normalization="zscore")["q1"]
    assert fused["a"] == pytest.approx(za["a"] + zb["a"])
    assert fused["b"] == pytest.approx(za["b"] + min(zb.values()))  # missing from B: B's minimum
    assert fused["d"] == pytest.approx(min(za.values()) + zb["d"])
    raw = convex([RUN_A, RUN_B], weights=[0.5, 0.5], normalization="none")["q1"]
    assert raw["b"] == pytest.approx(0.5 * 5.0 + 0.5 * 0.1)
    assert raw["a"] == pytest.approx(0.5 * 9.0 + 0.5 * 0.1)


def test_fusion_arguments_are_checked():
    with pytest.raises(ValueError, match="one weight per run"):
        convex([RUN_A, RUN_B], weights=[1.0])
    with pytest.raises(ValueError, match="normalization"):
        convex([RUN_A, RUN_B], weights=[1, 1], normalization="max")
    with pytest.raises(ValueError, match=">= 0"):
        rrf([RUN_A], k=-1)
    with pytest.raises(TypeError, match="list of runs"):
        rrf(RUN_A)


# ---------------------------------------------------------------------------------------------------
# HybridIndex over two sparse indexes (seeded random weights), checked against brute force + formula
# ---------------------------------------------------------------------------------------------------
def _weights(rng, n, nnz, vocab):
    return [
        {
            f"t{t}": float(w)
            for t, w in zip(rng.choice(vocab, nnz, replace=False), rng.random(nnz) + 0.01, strict=True)
        }
        for _ in range(n)
    ]


def _dense(ws, vocab):
    m = np.zeros((len(ws), vocab))
    for i, w in enumerate(ws):
        for t, v in w.items():
            m[i, int(t[1:])] = np.float32(v)
    return m


@pytest.fixture(scope="module")
def two_views():
    """The same 400 documents seen by two different sparse representations."""
    rng = np.random.default_rng(7)
    n, vocab = 400, 500
    ids = [f"d{i}" for i in range(n)]
    meta = [{"year": 2010 + i % 10} for i in range(n)]
    views = []
    for _ in range(2):
        docs, queries = _weights(rng, n, 25, vocab), _weights(rng, 8, 6, vocab)
        views.append((docs, queries, _dense(queries, vocab) @ _dense(docs, vocab).T))
    return ids, meta, views


def _index(ids, meta, docs):
    index = SparseIndex()
    index.add(ids, [f"text of {i}" for i in ids], weights=docs, metadata=meta)
    return index


def _top(scores, allowed, depth):
    cand = np.flatnonzero(allowed)
    order = np.lexsort((cand, -scores[cand]))[:depth]
    return cand[order], scores[cand[order]]


def _hybrid_queries(views):
    # the two sub-indexes need their own query representation: a dict works for both only if it
    # holds both sets of terms, so prefix them per view and merge
    return [{**views[0][1][i], **views[1][1][i]} for i in range(len(views[0][1]))]


def _reference(ids, views, allowed, depth, k, method, weight=0.5):
    out = []
    for qi in range(len(views[0][1])):
        lists = []
        for _, _, scores in views:  # vocabularies are disjoint: each view scores its own terms
            lists.append(_top(scores[qi], allowed, depth))
        fused: dict[str, float] = {}
        if method == "rrf":
            for pos, _ in lists:
                for rank, p in enumerate(pos, start=1):
                    fused[ids[p]] = fused.get(ids[p], 0.0) + 1 / (60 + rank)
        else:
            normed = []
            for pos, sc in lists:
                lo, hi = sc.min(), sc.max()
                normed.append({ids[p]: (s - lo) / (hi - lo) for p, s in zip(pos, sc, strict=True)})
            for w, n in zip((weight, 1 - weight), normed, strict=True):
                for d in set().union(*normed):
                    fused[d] = fused.get(d, 0.0) + w * n.get(d, 0.0)
        out.append(sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:k])
    return out


@pytest.fixture(scope="module")
def prefixed(two_views):
    """Two views with disjoint vocabularies (prefix A/B) so one merged query dict serves both."""
    ids, meta, views = two_views
    out = []
    for prefix, (docs, queries, scores) in zip("AB", views, strict=True):
        out.append(
            (
                [{prefix + t: w for t, w in d.items()} for d in docs],
                [{prefix + t: w for t, w in q.items()} for q in queries],
                scores,
            )
        )
    return ids, meta, out


@pytest.mark.parametrize("method", ["rrf", "convex"])
def test_hybrid_equals_fused_brute_force(prefixed, method):
    ids, meta, views = prefixed
    hybrid = HybridIndex(
        _index(ids, meta, views[0][0]), _index(ids, meta, views[1][0]), method=method, weight=0.7, depth=30
    )
    got = hybrid.search(_hybrid_queries(views), k=10)
    ref = _reference(ids, views, np.ones(len(ids), bool), depth=30, k=10, method=method, weight=0.7)
    for hits, expected in zip(got, ref, strict=True):
        assert [h.id for h in hits] == [d for d, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-5)
        assert all(h.text == f"text of {h.id}" for h in hits)


def test_filters_pass_through_to_both(prefixed):
    ids, meta, views = prefixed
    hybrid = HybridIndex(_index(ids, meta, views[0][0]), _index(ids, meta, views[1][0]), depth=20)
    hybrid.delete(["d1", "d3"])
    flt = {"year": {"$in": [2012, 2015]}}
    subset = [f"d{i}" for i in range(0, 200)]
    allowed = np.array(
        [m["year"] in (2012, 2015) and i < 200 and i not in (1, 3) for i, m in enumerate(meta)]
    )
    got = hybrid.search(_hybrid_queries(views), k=10, filters=flt, ids=subset)
    ref = _reference(ids, views, allowed, depth=20, k=10, method="rrf")
    for hits, expected in zip(got, ref, strict=True):
        assert len(hits) == 10
        assert all(h.metadata["year"] in (2012, 2015) and int(h.id[1:]) < 200 for h in hits)
        assert [h.id for h in hits] == [d for d, _ in expected]


def test_hybrid_save_load(prefixed, tmp_path):
    ids, meta, views = prefixed
    hybrid = HybridIndex(
        _index(ids, meta, views[0][0]),
        _index(ids, meta, views[1][0]),
        method="convex",
        weight=0.3,
        normalization="zscore",
        depth=50,
    )
    queries = _hybrid_queries(views)
    before = hybrid.search(queries, k=10)
    path = hybrid.save(tmp_path / "hybrid")
    manifest = read_manifest(path, kind="hybrid")
    assert manifest["settings"] == hybrid.get_config_dict()
    assert {r: c["kind"] for r, c in manifest["components"].items()} == {
        "first": "sparse",
        "second": "sparse",
    }
    for role in ("first", "second"):
        sub = manifest["components"][role]["path"]
        assert sub == f"{role}-g1"
        assert read_manifest(path / sub, kind="sparse")["corpus"]["count"] == len(ids)

    loaded = HybridIndex.load(path)
    assert loaded.get_config_dict() == hybrid.get_config_dict()
    after = loaded.search(queries, k=10)
    assert [[(h.id, h.score) for h in hs] for hs in after] == [[(h.id, h.score) for h in hs] for hs in before]

    loaded.delete(["d0"])
    loaded.save(path)  # a second generation replaces the sub-folders
    manifest2 = read_manifest(path)
    assert manifest2["generation"] == 2 and manifest2["corpus"]["count"] == len(ids) - 1
    assert sorted(p.name for p in path.iterdir()) == ["first-g2", "manifest.json", "second-g2"]


def test_hybrid_of_bm25_and_splade(tmp_path, splade_path):
    """Different kinds behind one hybrid, text queries to both; the BM25 sub-index loads through
    distilir_index.loading, the sparse one with its SPLADE encoder rebuilt from its manifest."""
    from distilir_index.bm25 import BM25Index
    from distilir_index.sparse_encoder import SparseEncoder

    texts = [
        "cats purr softly",
        "dogs bark loudly at night",
        "a cat and a dog",
        "stock markets fell",
        "the cat sat on the mat",
        "interest rates and inflation",
    ]
    ids = [f"d{i}" for i in range(len(texts))]
    hybrid = HybridIndex(BM25Index(), SparseIndex(SparseEncoder(splade_path, max_length=32)), depth=5)
    hybrid.add(ids, texts, metadata=[{"n": i} for i in range(len(ids))])
    queries = ["a purring cat", "central bank rates"]
    got = hybrid.search(queries, k=3)
    firsts = hybrid.first.search(queries, k=5)
    seconds = hybrid.second.search(queries, k=5)
    for hits, a, b in zip(got, firsts, seconds, strict=True):
        expected = rrf([{"q": {h.id: h.score for h in a}}, {"q": {h.id: h.score for h in b}}], k=60)["q"]
        assert [(h.id, h.score) for h in hits] == list(expected.items())[:3]
        assert all(h.text == texts[int(h.id[1:])] and h.metadata == {"n": int(h.id[1:])} for h in hits)
    path = hybrid.save(tmp_path / "h")
    loaded = HybridIndex.load(path)
    assert type(loaded.first).__name__ == "BM25Index" and type(loaded.second).__name__ == "SparseIndex"
    assert loaded.second.encoder is not None
    again = loaded.search(queries, k=3)
    assert [[h.id for h in hs] for hs in again] == [[h.id for h in hs] for hs in got]
    np.testing.assert_allclose([h.score for hs in again for h in hs], [h.score for hs in got for h in hs])


def test_hybrid_arguments_are_checked(prefixed):
    ids, meta, views = prefixed
    a = _index(ids[:5], meta[:5], views[0][0][:5])
    with pytest.raises(ValueError, match="method"):
        HybridIndex(a, a, method="sum")
    with pytest.raises(ValueError, match="weight"):
        HybridIndex(a, a, method="convex", weight=1.5)
    with pytest.raises(ValueError, match="depth"):
        HybridIndex(a, a, depth=0)
    with pytest.raises(TypeError, match="search"):
        HybridIndex(a, object())
    with pytest.raises(TypeError, match="wrap it in a list"):
        HybridIndex(a, a).search("one string")


def test_public_surface():
    import distilir_index.hybrid as hybrid_module

    assert hybrid_module.__all__ == ["FUSION_METHODS", "NORMALIZATIONS", "HybridIndex", "convex", "rrf"]
