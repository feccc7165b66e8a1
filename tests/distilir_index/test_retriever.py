"""Retriever: loads any index kind, searches one query or a batch, checks its arguments.

References: the index's own ``search`` (the Retriever must not change answers) and, for dense, an
exact cosine ranking computed here with numpy from the encoder's vectors."""

from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pytest
from distilir_index.base import ManifestError
from distilir_index.filters import FilterError
from distilir_index.retriever import DEFAULT_MAX_K, InvalidK, InvalidQuery, Retriever

N_DOCS = 60


@pytest.fixture(scope="module")
def corpus(data_dir):
    docs = []
    with gzip.open(data_dir / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(itertools.islice(f, N_DOCS)):
            row = json.loads(line)
            docs.append((row["_id"], f"{row['title']} {row['text'][:250]}", {"n": i, "even": i % 2 == 0}))
    return docs


@pytest.fixture(scope="module")
def queries(data_dir):
    with gzip.open(data_dir / "scifact" / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in itertools.islice(f, 6)]


@pytest.fixture(scope="module")
def bm25_dir(tmp_path_factory, corpus):
    from distilir_index.bm25 import BM25Index

    index = BM25Index()
    index.add([d[0] for d in corpus], [d[1] for d in corpus], metadata=[d[2] for d in corpus])
    return index.save(tmp_path_factory.mktemp("retriever") / "bm25")


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory, corpus, minilm):
    from distilir_index.dense import DenseIndex
    from distilir_index.encoders import DenseEncoder

    index = DenseIndex(DenseEncoder(minilm))
    index.add([d[0] for d in corpus], [d[1] for d in corpus], metadata=[d[2] for d in corpus])
    return index.save(tmp_path_factory.mktemp("retriever") / "dense")


@pytest.fixture(scope="module")
def sparse_dir(tmp_path_factory, corpus, splade_path):
    from distilir_index.sparse import SparseIndex
    from distilir_index.sparse_encoder import SparseEncoder

    index = SparseIndex(SparseEncoder(splade_path))
    index.add([d[0] for d in corpus], [d[1] for d in corpus], metadata=[d[2] for d in corpus])
    return index.save(tmp_path_factory.mktemp("retriever") / "sparse")


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory, bm25_dir, dense_dir):
    from distilir_index.bm25 import BM25Index
    from distilir_index.dense import DenseIndex
    from distilir_index.hybrid import HybridIndex

    hybrid = HybridIndex(BM25Index.load(bm25_dir), DenseIndex.load(dense_dir), method="rrf")
    return hybrid.save(tmp_path_factory.mktemp("retriever") / "hybrid")


@pytest.fixture(scope="module")
def bm25(bm25_dir):
    return Retriever.load(bm25_dir)


@pytest.fixture(scope="module")
def dense(dense_dir):
    return Retriever.load(dense_dir)


def test_load_picks_the_class_from_the_manifest(bm25, dense, bm25_dir):
    from distilir_index.bm25 import BM25Index
    from distilir_index.dense import DenseIndex

    assert isinstance(bm25.index, BM25Index) and bm25.kind == "bm25" and len(bm25) == N_DOCS
    assert isinstance(dense.index, DenseIndex) and dense.kind == "dense" and len(dense) == N_DOCS
    assert bm25.query_encoder is None and dense.query_encoder is dense.index.encoder
    assert (
        bm25.path == bm25_dir and repr(bm25) == f"Retriever(kind='bm25', count={N_DOCS}, path='{bm25_dir}')"
    )


def test_sparse_and_hybrid_indexes_load_and_search(sparse_dir, hybrid_dir, bm25, dense, queries):
    from distilir_index.hybrid import HybridIndex
    from distilir_index.sparse import SparseIndex

    sparse = Retriever.load(sparse_dir)
    assert isinstance(sparse.index, SparseIndex) and sparse.kind == "sparse" and len(sparse) == N_DOCS
    assert sparse.query_encoder is sparse.index.encoder
    for q in queries[:3]:
        assert sparse.search(q, k=5) == sparse.index.search([q], k=5)[0]
    hybrid = Retriever.load(hybrid_dir)
    assert isinstance(hybrid.index, HybridIndex) and hybrid.kind == "hybrid" and hybrid.query_encoder is None
    # reference, by hand: RRF (Cormack et al. 2009), score(d) = sum over lists of 1 / (60 + rank(d))
    q = queries[0]
    fused_scores: dict[str, float] = {}
    for r in (bm25, dense):
        for rank, h in enumerate(r.search(q, k=100), start=1):
            fused_scores[h.id] = fused_scores.get(h.id, 0.0) + 1.0 / (60 + rank)
    fused = sorted(fused_scores.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    hits = hybrid.search(q, k=10)
    assert [h.id for h in hits] == [d for d, _ in fused]
    assert [h.score for h in hits] == pytest.approx([s for _, s in fused])


def test_search_returns_what_the_index_returns(bm25, queries):
    for q in queries:
        assert bm25.search(q, k=5) == bm25.index.search([q], k=5)[0]
    hits = bm25.search(queries[0], k=3)
    assert len(hits) == 3 and hits[0].text and "n" in hits[0].metadata
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_dense_search_equals_exact_cosine_ranking(dense, corpus, queries):
    encoder = dense.query_encoder
    docs = encoder.encode_documents([d[1] for d in corpus])
    for q in queries[:3]:
        scores = docs @ encoder.encode_queries([q])[0]
        order = np.argsort(-scores, kind="stable")[:10]
        hits = dense.search(q, k=10)
        assert [h.id for h in hits] == [corpus[i][0] for i in order]
        assert [h.score for h in hits] == pytest.approx(scores[order].tolist(), abs=1e-5)


@pytest.mark.parametrize("which", ["bm25", "dense"])
def test_search_many_equals_searching_one_by_one(request, which, queries):
    retriever = request.getfixturevalue(which)
    batched = retriever.search_many(queries, k=4)
    assert len(batched) == len(queries)
    for q, hits in zip(queries, batched, strict=True):
        one = retriever.search(q, k=4)
        assert [h.id for h in hits] == [h.id for h in one]
        assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-5)
    assert retriever.search_many([], k=4) == []


@pytest.mark.parametrize("which", ["bm25", "dense"])
def test_filters_and_ids_restrict_the_search(request, which, corpus, queries):
    retriever = request.getfixturevalue(which)
    hits = retriever.search(queries[0], k=5, filters={"even": True, "n": {"$gte": 10}})
    assert hits and all(h.metadata["even"] and h.metadata["n"] >= 10 for h in hits)
    assert hits == retriever.index.search([queries[0]], k=5, filters={"even": True, "n": {"$gte": 10}})[0]
    allowed = [d[0] for d in corpus[:8]]
    hits = retriever.search(queries[1], k=20, ids=allowed)
    assert {h.id for h in hits} <= set(allowed)


@pytest.mark.parametrize(
    "query, message", [("", "query is empty"), ("   \n", "query is empty"), (42, "must be a string, got int")]
)
def test_bad_queries_are_refused(bm25, query, message):
    with pytest.raises(InvalidQuery, match=message):
        bm25.search(query)


@pytest.mark.parametrize("k", [0, -3, DEFAULT_MAX_K + 1, True, 2.5, "10"])
def test_bad_k_is_refused_with_the_range(bm25, k):
    with pytest.raises(InvalidK, match=f"1..{DEFAULT_MAX_K}"):
        bm25.search("cells", k=k)


def test_max_k_is_configurable(bm25_dir):
    small = Retriever.load(bm25_dir, max_k=5)
    assert len(small.search("cells", k=5)) <= 5
    with pytest.raises(InvalidK, match="raise max_k"):
        small.search("cells", k=6)


def test_batch_and_filter_argument_mistakes_are_explained(bm25):
    with pytest.raises(InvalidQuery, match="single string"):
        bm25.search_many("cells and tissues")
    with pytest.raises(InvalidQuery, match=r"queries\[1\] is empty"):
        bm25.search_many(["cells", ""])
    with pytest.raises(FilterError, match="mapping"):
        bm25.search("cells", filters=[("n", 1)])
    with pytest.raises(InvalidQuery, match="ids must be a list"):
        bm25.search("cells", ids="4983")
    with pytest.raises(TypeError, match="BaseIndex"):
        Retriever(object())
    with pytest.raises(ValueError, match="max_k"):
        Retriever(bm25.index, max_k=0)


def test_loading_something_that_is_not_an_index_says_so(tmp_path):
    with pytest.raises(ManifestError, match="has no manifest.json"):
        Retriever.load(tmp_path)
    with pytest.raises(ManifestError, match="does not exist"):
        Retriever.load(tmp_path / "missing")


def test_describe(dense, bm25):
    d = dense.describe()
    assert d["kind"] == "dense" and d["count"] == N_DOCS
    assert d["encoder"]["dimension"] == 384 and d["encoder"]["normalize"] is True
    assert d["manifest"]["corpus"]["count"] == N_DOCS and d["manifest"]["generation"] == 1
    assert bm25.describe()["encoder"] is None
    json.dumps(d)  # JSON-ready
    assert bm25.get_config_dict() == {"kind": "bm25", "max_k": DEFAULT_MAX_K, "path": str(bm25.path)}


def test_public_surface():
    import distilir_index.adapters as adapters
    import distilir_index.retriever as retriever
    import distilir_index.service as service

    assert retriever.__all__ == ["DEFAULT_MAX_K", "InvalidK", "InvalidQuery", "Retriever"]
    assert sorted(service.__all__) == ["Backend", "MicroBatcher", "Reranker", "ServiceSettings", "create_app"]
    assert sorted(adapters.__all__) == ["DistilirLangChainRetriever", "DistilirLlamaIndexRetriever"]
    for module in (retriever, service, adapters):
        for name in module.__all__:
            assert getattr(module, name) is not None


def _docstring_example(obj) -> str:
    """The ``Example::`` block of ``obj``'s docstring, dedented (the lines indented below it)."""
    import inspect
    import textwrap

    lines = inspect.getdoc(obj).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Example::")
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip()


def test_load_docstring_example_runs(bm25_dir, dense_dir, minilm_path):
    """Every call of ``Retriever.load``'s own example, run against real indexes (the paths it
    names replaced by this test's): a keyword the example shows and the signature refuses fails here."""
    example = _docstring_example(Retriever.load)
    assert example.count("Retriever.load(") >= 3
    for placeholder, real in {
        "indexes/scifact-dense": dense_dir,
        "indexes/scifact-bm25": bm25_dir,
        "runs/qs/model": minilm_path,
    }.items():
        assert placeholder in example
        example = example.replace(placeholder, str(real))
    namespace: dict = {}
    exec(compile(example, "Retriever.load docstring", "exec"), namespace)
    loaded = [v for v in namespace.values() if isinstance(v, Retriever)]
    assert len(loaded) >= 3 and {r.kind for r in loaded} == {"bm25", "dense"}
    for r in loaded:
        assert r.search("cells", k=2)


def test_load_with_model_names_the_parameter_to_use(dense_dir, bm25_dir, minilm_path):
    with pytest.raises(TypeError, match=r"model=.*query_encoder="):
        Retriever.load(dense_dir, model=minilm_path)
    with pytest.raises(TypeError, match=r"no_such_option=.*'bm25' index.*accepts mmap="):
        Retriever.load(bm25_dir, no_such_option=1)


def test_readme_retriever_example_finds_hits_with_its_filter(tmp_path, capsys):
    """The README's "What RAG code calls" block, run against scifact indexed by `distilir-index
    build` (a BM25 index in place of the dense one: the block says any saved kind loads)."""
    from pathlib import Path

    from distilir_index.cli import main

    out = tmp_path / "scifact-bm25"
    assert main(["build", "--corpus", "scifact", "--kind", "bm25", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("What RAG code calls:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "indexes/scifact-dense" in block and "filters=" in block
    namespace: dict = {}
    exec(compile(block.replace("indexes/scifact-dense", str(out)), "README.md", "exec"), namespace)
    from distilir_index.base import Hit

    retriever = namespace["retriever"]
    filtered = [
        v
        for k, v in namespace.items()
        if k != "hits" and isinstance(v, list) and all(isinstance(h, Hit) for h in v)
    ]
    assert filtered and all(filtered), "the README's filtered search returns no hits on scifact"
    assert {h.id for h in filtered[0]}.isdisjoint(h.id for h in namespace["hits"])
    # a field scifact's documents lack is refused, naming the ones they have; $lenient allows it
    with pytest.raises(FilterError, match=r"\['year'\].*fields present: \['title'\]"):
        retriever.search("aspirin", k=5, filters={"year": {"$gte": 2015}})
    assert retriever.search("aspirin", k=5, filters={"year": {"$gte": 2015}, "$lenient": True}) == []
