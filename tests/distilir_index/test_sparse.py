"""SparseIndex against brute-force dense dot products (seeded random vectors and real SPLADE vectors),
filters, deletes, save/load, and the SparseEncoder against sentence-transformers' own pooling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from distilir_index.base import read_manifest
from distilir_index.encoders import EncoderMismatch
from distilir_index.sparse import SparseIndex
from distilir_index.sparse_encoder import SparseEncoder

# ---------------------------------------------------------------------------------------------------
# Seeded synthetic sparse vectors and the brute-force reference
# ---------------------------------------------------------------------------------------------------
VOCAB = 3000


def random_weights(rng: np.random.Generator, n: int, nnz: int, vocab: int = VOCAB) -> list[dict[str, float]]:
    out = []
    for _ in range(n):
        terms = rng.choice(vocab, size=nnz, replace=False)
        weights = rng.random(nnz).astype(np.float32) + np.float32(0.01)
        out.append({f"t{t}": float(w) for t, w in zip(terms, weights, strict=True)})
    return out


def dense(weights: list[dict[str, float]], vocab: int = VOCAB) -> np.ndarray:
    m = np.zeros((len(weights), vocab), dtype=np.float64)
    for i, w in enumerate(weights):
        for term, value in w.items():
            m[i, int(term[1:])] = value
    return m


def brute_force(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: positions and scores of the top k among ``allowed`` by (-score, position)."""
    out = []
    for row in scores:
        cand = np.flatnonzero(allowed)
        order = np.lexsort((cand, -row[cand]))[:k]
        out.append((cand[order], row[cand[order]]))
    return out


def assert_same(hits, reference, ids):
    assert len(hits) == len(reference)
    for got, (pos, sc) in zip(hits, reference, strict=True):
        assert [h.id for h in got] == [ids[p] for p in pos]
        np.testing.assert_allclose([h.score for h in got], sc, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(1234)
    docs = random_weights(rng, 1500, 40)
    queries = random_weights(rng, 30, 12)
    ids = [f"doc{i}" for i in range(len(docs))]
    meta = [{"year": 2000 + i % 10, "lang": "en" if i % 3 else "de"} for i in range(len(docs))]
    return ids, docs, queries, meta, dense(queries) @ dense(docs).T


def build(ids, docs, meta, split=1400) -> SparseIndex:
    index = SparseIndex()
    index.add(ids[:split], weights=docs[:split], metadata=meta[:split])
    index.search([{"t1": 1.0}], k=1)  # consolidates the first batch
    index.add(ids[split:], weights=docs[split:], metadata=meta[split:])  # stays in the pending segment
    return index


def test_top10_equals_brute_force(synthetic):
    ids, docs, queries, meta, scores = synthetic
    index = build(ids, docs, meta)
    assert index._pending, "the second batch should be searched as a pending segment"
    ref = brute_force(scores, np.ones(len(ids), bool), 10)
    assert_same(index.search(queries, k=10), ref, ids)
    index.consolidate()
    assert not index._pending
    assert_same(index.search(queries, k=10), ref, ids)
    assert len(index) == len(ids)


def test_filters_and_deletes_equal_brute_force(synthetic):
    ids, docs, queries, meta, scores = synthetic
    index = build(ids, docs, meta)
    gone = ids[::7]
    assert index.delete(gone + ["no-such-doc"]) == len(gone)
    assert index.delete(gone) == 0
    live = np.ones(len(ids), bool)
    live[::7] = False

    assert_same(index.search(queries, k=10), brute_force(scores, live, 10), ids)

    flt = {"year": {"$gte": 2007}, "lang": "en"}
    passes = np.array([m["year"] >= 2007 and m["lang"] == "en" for m in meta]) & live
    got = index.search(queries, k=10, filters=flt)
    assert_same(got, brute_force(scores, passes, 10), ids)
    assert all(h.metadata["year"] >= 2007 and h.metadata["lang"] == "en" for hs in got for h in hs)

    subset = ids[:40]  # ids restriction: 40 candidates minus the deleted ones
    allowed = np.zeros(len(ids), bool)
    allowed[:40] = True
    got = index.search(queries, k=50, ids=subset)
    assert all(len(hs) == int((allowed & live).sum()) for hs in got)  # fewer than k pass: all of them
    assert_same(got, brute_force(scores, allowed & live, 50), ids)


def test_k_hits_when_k_documents_pass_even_without_matching_terms(synthetic):
    ids, docs, queries, meta, scores = synthetic
    index = build(ids, docs, meta)
    index.delete(["doc0", "doc2"])
    hits = index.search([{"never-seen-term": 3.0}], k=5)[0]
    # no document shares a term: every score is 0 and insertion order decides, deleted ones skipped
    assert [h.id for h in hits] == ["doc1", "doc3", "doc4", "doc5", "doc6"]
    assert all(h.score == 0.0 for h in hits)
    # a query matching two documents: those two first, then zero-score documents
    q = {next(iter(docs[10])): 1.0}
    matching = [i for i, d in enumerate(docs) if next(iter(docs[10])) in d and ids[i] not in ("doc0", "doc2")]
    hits = index.search([q], k=len(matching) + 3)[0]
    assert {h.id for h in hits[: len(matching)]} == {ids[i] for i in matching}
    assert all(h.score > 0 for h in hits[: len(matching)]) and all(
        h.score == 0 for h in hits[len(matching) :]
    )


def test_save_load_round_trip(synthetic, tmp_path):
    ids, docs, queries, meta, scores = synthetic
    index = build(ids, docs, meta)
    index.add(
        ["extra"], ["a stored text"], weights=[{"t5": 2.0, "brand-new-term": 1.0}], metadata=[{"year": 1999}]
    )
    index.delete(ids[:100])
    before = index.search(queries, k=10, filters={"lang": "de"})
    out = index.save(tmp_path / "idx")
    manifest = read_manifest(out, kind="sparse")
    assert manifest["encoder"] is None and manifest["corpus"]["count"] == len(ids) - 100 + 1
    assert set(manifest["files"]) >= {"postings", "vocabulary", "docs", "digests"}
    assert manifest["settings"]["positions"] == len(ids) - 100 + 1  # compacted on save

    loaded = SparseIndex.load(out)
    assert len(loaded) == len(index) and loaded.encoder is None
    after = loaded.search(queries, k=10, filters={"lang": "de"})
    assert [[(h.id, h.score, h.metadata) for h in hs] for hs in after] == [
        [(h.id, h.score, h.metadata) for h in hs] for hs in before
    ]
    extra = loaded.search([{"brand-new-term": 1.0}], k=1)[0][0]
    assert extra.id == "extra" and extra.text == "a stored text" and extra.score == pytest.approx(1.0)

    # keeps working after load: add, delete, save again as a new generation; old files are swept
    loaded.add(["late"], weights=[{"t7": 5.0}])
    assert loaded.search([{"t7": 1.0}], k=1)[0][0].id == "late"
    loaded.save(out)
    manifest2 = read_manifest(out)
    assert manifest2["generation"] == manifest["generation"] + 1
    names = {p.name for p in Path(out).iterdir()}
    assert names == {"manifest.json", *manifest2["files"].values()}


def test_stats(synthetic):
    ids, docs, queries, meta, _ = synthetic
    index = build(ids, docs, meta)
    index.delete(ids[:10])
    s = index.stats(queries)
    assert s["documents"] == len(ids) - 10 and s["deleted"] == 10
    assert s["avg_terms_per_document"] == pytest.approx(np.mean([len(d) for d in docs[10:]]))
    assert s["avg_terms_per_query"] == pytest.approx(np.mean([len(q) for q in queries]))


def test_public_surface():
    import distilir_index.sparse as sparse_module
    import distilir_index.sparse_encoder as encoder_module

    assert sparse_module.__all__ == ["SparseIndex"]
    assert encoder_module.__all__ == ["DEFAULT_SPARSE_MODEL", "SparseEncoder", "use_fast_pooling"]


def test_bad_input(synthetic):
    ids, docs, *_ = synthetic
    index = SparseIndex()
    with pytest.raises(ValueError, match="no encoder"):
        index.add(["a"], ["some text"])
    with pytest.raises(ValueError, match="finite and >= 0"):
        index.add(["a"], weights=[{"x": -1.0}])
    with pytest.raises(ValueError, match="one per id"):
        index.add(["a", "b"], weights=[{"x": 1.0}])
    with pytest.raises(TypeError, match="wrap it in a list"):
        index.add("a", weights=[{"x": 1.0}])
    index.add(["a"], weights=[{"x": 1.0}])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(["a"], weights=[{"x": 1.0}])
    with pytest.raises(TypeError, match="wrap it in a list"):
        index.search("x")
    with pytest.raises(ValueError, match="no encoder"):
        index.search(["text query"])
    with pytest.raises(ValueError, match="positive int"):
        index.search([{"x": 1.0}], k=0)
    assert len(index) == 1  # failed adds changed nothing


# ---------------------------------------------------------------------------------------------------
# The real SPLADE model on a slice of SciFact
# ---------------------------------------------------------------------------------------------------
def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def splade(splade_path) -> SparseEncoder:
    # max_length 128 keeps the default suite fast on CPU; the slow test uses the model's full 512.
    return SparseEncoder(splade_path, max_length=128, batch_size=16)


@pytest.fixture(scope="module")
def scifact_slice(data_dir):
    """The judged test queries 0..29, their relevant documents, and other documents up to 150."""
    root = data_dir / "scifact"
    corpus = read_jsonl_gz(root / "corpus.jsonl.gz")
    queries = {q["_id"]: q["text"] for q in read_jsonl_gz(root / "queries.jsonl.gz")}
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    qids = sorted(qrels, key=int)[:30]
    wanted = {d for q in qids for d in qrels[q]}
    docs = [d for d in corpus if d["_id"] in wanted]
    docs += [d for d in corpus if d["_id"] not in wanted][: 150 - len(docs)]
    texts = [f"{d['title']} {d['text']}".strip() for d in docs]
    return [d["_id"] for d in docs], texts, {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


@pytest.fixture(scope="module")
def splade_index(splade, scifact_slice):
    ids, texts, _, _ = scifact_slice
    index = SparseIndex(splade)
    index.add(ids[:100], texts[:100], metadata=[{"half": 0}] * 100)
    index.add(ids[100:], texts[100:], metadata=[{"half": 1}] * (len(ids) - 100))
    return index


def test_fast_pooling_equals_sentence_transformers(splade_path):
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    texts = ["Aspirin lowers the risk of a second heart attack.", "tides", "BM25 " * 40]
    fast = SparseEncoder(splade_path, max_length=64)
    (pooling,) = [m for m in fast.model.modules() if isinstance(m, SpladePooling)]
    a = fast.encode_documents_csr(texts)
    assert "forward" in vars(pooling)  # our pool-then-activate forward ran
    library = SparseEncoder(fast.model, fast_pooling=False)  # the same loaded model
    b = library.encode_documents_csr(texts)
    assert "forward" not in vars(pooling)  # sentence-transformers' own SpladePooling.forward ran
    assert a.nnz > 0 and a.shape == (3, 30522)
    np.testing.assert_array_equal(a.toarray(), b.toarray())  # bit-identical
    np.testing.assert_array_equal(fast.encode_documents_csr(texts).toarray(), a.toarray())


def test_encoder_outputs_terms(splade):
    (q,) = splade.encode_queries(["what causes ocean tides"])
    assert q and all(w > 0 for w in q.values())
    assert list(q.values()) == sorted(q.values(), reverse=True)
    assert set(q) <= set(splade.vocabulary) and "tides" in q
    pruned = SparseEncoder(splade.model, max_active_dims=5, min_weight=0.5).encode_queries(
        ["what causes ocean tides"]
    )[0]
    assert len(pruned) <= 5 and all(w >= 0.5 for w in pruned.values())
    assert list(pruned) == [t for t in q if q[t] >= 0.5][: len(pruned)]
    desc = splade.describe()
    assert desc["pooling"] == "splade-max-relu" and desc["vocab_size"] == 30522 == len(splade.vocabulary)
    assert desc["max_length"] == 128 and desc["fingerprint"].startswith("sha256:")


def test_splade_search_equals_brute_force(splade, splade_index, scifact_slice):
    ids, texts, queries, qrels = scifact_slice
    qtexts = list(queries.values())
    hits = splade_index.search(qtexts, k=10)
    # brute force: dense numpy dot products of the real query and document vectors
    doc_matrix = splade_index.document_matrix().toarray().astype(np.float64)
    q_matrix = splade.encode_queries_csr(qtexts).toarray().astype(np.float64)
    assert_same(hits, brute_force(q_matrix @ doc_matrix.T, np.ones(len(ids), bool), 10), ids)
    # the stored vectors are the encoder's document vectors
    np.testing.assert_array_equal(doc_matrix[:3], splade.encode_documents_csr(texts[:3]).toarray())
    # and they retrieve: SciFact relevant documents are usually at rank 1 in this 150-document pool
    import ir_measures

    run = {q: {h.id: h.score for h in hs} for q, hs in zip(queries, hits, strict=True)}
    assert ir_measures.calc_aggregate([ir_measures.RR @ 10], qrels, run)[ir_measures.RR @ 10] > 0.5
    filtered = splade_index.search(qtexts[:5], k=10, filters={"half": 1})
    assert all(len(hs) == 10 and all(ids.index(h.id) >= 100 for h in hs) for hs in filtered)

    s = splade_index.stats(qtexts)
    assert s["avg_terms_per_document"] == pytest.approx((doc_matrix != 0).sum() / len(ids))
    assert 0 < s["avg_terms_per_query"] == pytest.approx((q_matrix != 0).sum() / len(qtexts))


def test_splade_save_load_and_encoder_mismatch(splade, splade_index, splade_path, scifact_slice, tmp_path):
    queries = list(scifact_slice[2].values())[:5]
    before = splade_index.search(queries, k=10)
    path = splade_index.save(tmp_path / "splade")
    manifest = read_manifest(path, kind="sparse")
    assert manifest["encoder"] == splade.describe()

    loaded = SparseIndex.load(path)  # encoder rebuilt from the manifest
    assert loaded.encoder is not None and loaded.encoder.describe() == splade.describe()
    after = loaded.search(queries, k=10)
    assert [[h.id for h in hs] for hs in after] == [[h.id for h in hs] for hs in before]
    np.testing.assert_allclose(
        [h.score for hs in after for h in hs], [h.score for hs in before for h in hs], rtol=1e-6
    )

    with pytest.raises(EncoderMismatch, match="query_prompt"):
        SparseIndex.load(path, encoder=SparseEncoder(splade.model, max_length=128, query_prompt="query: "))
    bare = SparseIndex.load(path, load_encoder=False)
    assert bare.encoder is None
    weights = splade.encode_queries(queries[:1])
    assert [h.id for h in bare.search(weights, k=10)[0]] == [h.id for h in before[0]]


# ---------------------------------------------------------------------------------------------------
# Effectiveness on the full SciFact test set (slow: encodes 5,183 abstracts)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_splade_tiny_scifact_ndcg(data_dir, splade_path):
    import ir_measures

    root = data_dir / "scifact"
    corpus = read_jsonl_gz(root / "corpus.jsonl.gz")
    queries = {q["_id"]: q["text"] for q in read_jsonl_gz(root / "queries.jsonl.gz")}
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    qids = sorted(qrels, key=int)
    index = SparseIndex(SparseEncoder(splade_path), store_text=False)
    index.add([d["_id"] for d in corpus], [f"{d['title']} {d['text']}".strip() for d in corpus])
    hits = index.search([queries[q] for q in qids], k=100)
    run = {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)}
    result = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.R @ 100], qrels, run)
    ndcg, recall = result[ir_measures.nDCG @ 10], result[ir_measures.R @ 100]
    print(f"SPLADE-tiny SciFact test: nDCG@10={ndcg:.4f} R@100={recall:.4f}")
    assert result[ir_measures.nDCG @ 10] == pytest.approx(EXPECTED_SCIFACT_NDCG10, abs=0.005)


#: Measured with this code (see benchmarks/reports/sparse.md); guards against regressions.
EXPECTED_SCIFACT_NDCG10 = 0.6466


def test_a_dense_model_is_refused_as_a_sparse_encoder():
    # sentence-transformers would append a random SparseAutoEncoder head ('[unused799]' for "aspirin")
    from distilir_index.sparse_encoder import SparseEncoder

    with pytest.raises(
        ValueError, match="not a sparse \\(SPLADE\\) model: its modules are Transformer, Pooling"
    ):
        SparseEncoder("all-MiniLM-L6-v2")
