"""The IDF (inference-free) query side: oracles are the IDF formula applied by hand, sentence-transformers'
``SparseStaticEmbedding`` (the library's inference-free query module) and brute-force dot products."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from distilir_index.base import ManifestError, read_manifest
from distilir_index.idf_query import IDFQueryEncoder
from distilir_index.sparse import SparseIndex


def idf(n: int, df: int) -> float:
    """BM25's IDF, the formula the module docstring defines."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


#: Texts whose tokens (BERT wordpieces, lowercased) are the words themselves.
CORPUS = ["The cat sat", "the dog", "a cat and a dog", "Tides!"]
#: Their token sets, written by hand: N = 4.
DF = {"the": 2, "cat": 2, "sat": 1, "dog": 2, "a": 1, "and": 1, "tides": 1, "!": 1}


@pytest.fixture(scope="module")
def encoder(splade_path) -> IDFQueryEncoder:
    enc = IDFQueryEncoder(splade_path)
    enc.add_documents(CORPUS)
    return enc


def test_query_vector_is_the_idf_weighted_one_hot(encoder):
    assert encoder.documents == 4
    vocab = encoder.vocabulary
    df = encoder.document_frequency
    assert {vocab[j]: int(df[j]) for j in np.flatnonzero(df)} == DF
    # repeated tokens count once; case folds; "," is in no document (df 0); special tokens are dropped
    (q,) = encoder.encode_queries(["The cat, the CAT [UNK] [SEP] [MASK]"])
    assert q == pytest.approx({"the": idf(4, 2), "cat": idf(4, 2), ",": idf(4, 0)}, rel=1e-6)
    matrix = encoder.encode_queries_csr(["The cat, the CAT", "tides", ""])
    assert matrix.shape == (3, 30522) and matrix.dtype == np.float32
    dense = np.zeros((3, 30522))
    for row, tokens in enumerate([{"the": 2, "cat": 2, ",": 0}, {"tides": 1}, {}]):
        for token, d in tokens.items():
            dense[row, vocab.index(token)] = idf(4, d)
    np.testing.assert_allclose(matrix.toarray(), dense, rtol=1e-6)


def test_equals_sentence_transformers_sparse_static_embedding(encoder, splade_path, tmp_path):
    """The library's inference-free query module, loaded from our idf.json, gives the same vectors."""
    import torch
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding
    from transformers import AutoTokenizer

    (tmp_path / "idf.json").write_text(json.dumps(encoder.idf_dict()), encoding="utf-8")
    module = SparseStaticEmbedding.from_json(
        str(tmp_path / "idf.json"), AutoTokenizer.from_pretrained(splade_path)
    )
    queries = ["What causes ocean tides?", "the cat and the dog", "BRCA1 mutations in breast cancer"]
    with torch.no_grad():
        ref = module(module.preprocess(queries))["sentence_embedding"].numpy()
    np.testing.assert_allclose(encoder.encode_queries_csr(queries).toarray(), ref, rtol=1e-6)


def random_documents(seed: int, n: int, terms: list[str]) -> tuple[list[str], list[dict[str, float]]]:
    """Texts of random words and random SPLADE-like weights (on their words and on expansion terms)."""
    rng = np.random.default_rng(seed)
    words = ["cat", "dog", "tide", "moon", "the", "of", "sea", "salt", "heart", "blood", "cells", "gene"]
    texts, weights = [], []
    for _ in range(n):
        chosen = list(rng.choice(words, size=int(rng.integers(1, 6))))
        texts.append(" ".join(chosen))
        extra = list(rng.choice(terms, size=3))
        weights.append({t: float(rng.uniform(0.1, 3.0)) for t in chosen + extra})
    return texts, weights


def test_search_equals_brute_force_over_the_idf_vector(splade_path):
    enc = IDFQueryEncoder(splade_path)
    texts, weights = random_documents(0, 200, enc.vocabulary[2000:2100])
    ids = [f"d{i}" for i in range(200)]
    index = SparseIndex(query_side="idf", tokenizer=splade_path)
    index.add(ids[:150], texts[:150], weights=weights[:150], metadata=[{"part": i % 2} for i in range(150)])
    index.add(
        ids[150:], texts[150:], weights=weights[150:], metadata=[{"part": i % 2} for i in range(150, 200)]
    )
    assert index.delete(["d3", "d7"]) == 2
    # the oracle: df over the texts' token sets, by hand; deleting does not change df (module docstring)
    token_sets = [set(enc.token_ids([t])[0].tolist()) for t in texts]
    queries = ["the tide of the sea", "heart blood cells", "cat", "moon gene dog salt"]
    q = np.zeros((len(queries), 30522))
    for i, query in enumerate(queries):
        for tok in set(enc.token_ids([query])[0].tolist()):
            q[i, tok] = idf(200, sum(tok in s for s in token_sets))
    docs = index.document_matrix().toarray().astype(np.float64)[:, :30522]
    scores = q @ docs.T
    live = np.array([i not in ("d3", "d7") for i in ids])
    for filters in (None, {"part": 1}):
        hits = index.search(queries, k=10, filters=filters)
        allowed = live & (np.array([i % 2 == 1 for i in range(200)]) if filters else True)
        for row, hs in zip(scores, hits, strict=True):
            pos = np.flatnonzero(allowed)
            order = pos[np.lexsort((pos, -row[pos]))][:10]
            assert [h.id for h in hs] == [ids[p] for p in order]
            np.testing.assert_allclose([h.score for h in hs], row[order], rtol=1e-5)
    # the dict path gives the same scores: a query dict of the IDF vector is the same query
    (as_dict,) = index.query_encoder.encode_queries(queries[:1])
    assert [h.id for h in index.search([as_dict], k=10)[0]] == [
        h.id for h in index.search(queries[:1], k=10)[0]
    ]


@pytest.fixture(scope="module")
def splade(splade_path):
    from distilir_index.sparse_encoder import SparseEncoder

    return SparseEncoder(splade_path, max_length=128, batch_size=16)


@pytest.fixture(scope="module")
def scifact_slice(data_dir):
    """45 SciFact abstracts (title + text) and 10 test queries."""
    with gzip.open(data_dir / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for _, line in zip(range(45), f, strict=False)]
    with gzip.open(data_dir / "scifact" / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    qids = [
        line.split("\t")[0]
        for line in (data_dir / "scifact" / "qrels" / "test.tsv").read_text().splitlines()[1:]
    ]
    qids = list(dict.fromkeys(qids))[:10]
    texts = [f"{d['title']} {d['text']}".strip() for d in docs]
    return [d["_id"] for d in docs], texts, {q: queries[q] for q in qids}, None


@pytest.fixture(scope="module")
def splade_idf(splade, scifact_slice):
    ids, texts, _, _ = scifact_slice
    index = SparseIndex(splade, query_side="idf")
    index.add(ids[:40], texts[:40])
    return index


def test_splade_documents_with_the_idf_query_side(splade, splade_idf, scifact_slice):
    ids, texts, queries, _ = scifact_slice
    qtexts = list(queries.values())[:10]
    ref = IDFQueryEncoder(splade.model.tokenizer.backend_tokenizer)
    ref.add_documents(texts[:40])
    q = ref.encode_queries_csr(qtexts).toarray().astype(np.float64)
    scores = q @ splade_idf.document_matrix().toarray().astype(np.float64).T
    for row, hs in zip(scores, splade_idf.search(qtexts, k=10), strict=True):
        order = np.lexsort((np.arange(len(row)), -row))[:10]
        assert [h.id for h in hs] == [ids[p] for p in order]
    # the document side is the SPLADE encoder's; queries never reach the model
    np.testing.assert_array_equal(
        splade_idf.document_matrix()[:2].toarray(), splade.encode_documents_csr(texts[:2]).toarray()
    )
    assert splade_idf.describe()["settings"]["query_side"] == "idf"


def test_save_load_keeps_idf_and_loads_no_model(splade, splade_idf, scifact_slice, tmp_path):
    ids, texts, queries, _ = scifact_slice
    qtexts = list(queries.values())[:5]
    path = splade_idf.save(tmp_path / "idf")
    manifest = read_manifest(path, kind="sparse")
    assert manifest["settings"]["query_side"] == "idf"
    assert manifest["encoder"] == splade.describe()  # the document encoder, for adds and provenance
    assert manifest["query_encoder"]["kind"] == "idf" and manifest["query_encoder"]["documents"] == 40
    assert {"query_tokenizer", "document_frequency", "idf"} <= set(manifest["files"])
    np.testing.assert_array_equal(np.load(path / manifest["files"]["idf"]), splade_idf.query_encoder.idf)

    loaded = SparseIndex.load(path)
    assert loaded.encoder is None and loaded.query_side == "idf"
    np.testing.assert_array_equal(loaded.query_encoder.idf, splade_idf.query_encoder.idf)
    np.testing.assert_array_equal(
        loaded.query_encoder.document_frequency, splade_idf.query_encoder.document_frequency
    )
    before, after = splade_idf.search(qtexts, k=10), loaded.search(qtexts, k=10)
    assert [[h.id for h in hs] for hs in after] == [[h.id for h in hs] for hs in before]
    np.testing.assert_allclose([h.score for hs in after for h in hs], [h.score for hs in before for h in hs])

    # the same postings with the model's query side, and adds after a load keep counting
    model_side = SparseIndex.load(path, encoder=splade, query_side="model")
    weights = splade.encode_queries(qtexts[:1])
    assert [h.id for h in model_side.search(qtexts[:1], k=5)[0]] == [
        h.id for h in model_side.search(weights, k=5)[0]
    ]
    model_side.add(ids[40:45], texts[40:45])
    assert model_side.query_encoder.documents == 45

    plain = SparseIndex(splade)
    plain.add(ids[:2], texts[:2])
    plain.save(tmp_path / "plain")
    with pytest.raises(ManifestError, match="no IDF statistics"):
        SparseIndex.load(tmp_path / "plain", query_side="idf")
    np.save(path / manifest["files"]["idf"], np.zeros(30522, np.float32))
    with pytest.raises(ManifestError, match="damaged"):
        SparseIndex.load(path)


def test_no_torch_on_the_query_path(splade_idf, splade_path, tmp_path):
    """Loading an IDF index (directly, by Retriever, by the service) and searching imports no torch."""
    path = splade_idf.save(tmp_path / "idf")
    code = textwrap.dedent(
        f"""
        import json, sys
        from distilir_index.idf_query import IDFQueryEncoder
        from distilir_index.loading import load_index
        from distilir_index.retriever import Retriever
        from distilir_index.service import ServiceSettings, create_app
        from fastapi.testclient import TestClient

        enc = IDFQueryEncoder({splade_path!r})
        enc.add_documents(["the cat sat", "tides"])
        enc.encode_queries(["what causes tides"])
        hits = load_index({str(path)!r}).search(["aspirin and heart attacks"], k=5)
        retriever = Retriever.load({str(path)!r})
        retriever.search("aspirin and heart attacks", k=5)
        with TestClient(create_app(ServiceSettings(indexes={{"idf": {str(path)!r}}}))) as client:
            r = client.post("/v1/search", json={{"query": "aspirin and heart attacks", "k": 5}})
        print(json.dumps({{
            "status": r.status_code,
            "served": [h["id"] for h in r.json()["hits"]],
            "direct": [h.id for h in hits[0]],
            "loaded": [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules],
        }}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["status"] == 200 and result["served"] == result["direct"] and len(result["direct"]) == 5
    assert result["direct"] == [h.id for h in splade_idf.search(["aspirin and heart attacks"], k=5)[0]]


def test_bad_input(splade_path, tmp_path):
    with pytest.raises(ValueError, match="query_side must be"):
        SparseIndex(query_side="bm25")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        SparseIndex(query_side="idf")
    index = SparseIndex(query_side="idf", tokenizer=splade_path)
    with pytest.raises(ValueError, match="pass texts with the weights"):
        index.add(["d1"], weights=[{"cat": 1.0}])
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        IDFQueryEncoder(tmp_path)
    with pytest.raises(TypeError, match="single string"):
        index.query_encoder.encode_queries_csr("cat")
    with pytest.raises(ValueError, match="document_frequency"):
        IDFQueryEncoder(splade_path, document_frequency=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="documents must be"):
        IDFQueryEncoder(splade_path, document_frequency=np.ones(30522, np.int64), documents=0)
