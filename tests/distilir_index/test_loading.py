"""load_index dispatch and its registry, and the document table shared by index kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from distilir_index.base import ArtifactDir, BaseIndex, CorpusFingerprint, Index, ManifestError
from distilir_index.bm25 import BM25Index
from distilir_index.dense import DenseIndex
from distilir_index.loading import (
    INDEXES,
    DocumentTable,
    load_index,
    make_index,
    register_index_kind,
    registered_index_kinds,
)

DOCS = {
    "d1": "aspirin lowers the risk of heart attack",
    "d2": "statins lower cholesterol",
    "d3": "heart rate rises with exercise",
    "d4": "bm25 ranks documents by term statistics",
}


class ToyIndex(BaseIndex):
    """A real (tiny) index class used only to exercise the registry: load() reads its manifest."""

    kind = "toy"
    help = "a list of words"

    def __init__(self, words: list[str]) -> None:
        self.words = words

    def save(self, path):
        with ArtifactDir(path, kind=self.kind) as art:
            art.commit(settings={"words": self.words}, corpus={"count": len(self.words)})
        return path

    @classmethod
    def load(cls, path, **kwargs):
        from distilir_index.base import read_manifest

        return cls(read_manifest(path, kind=cls.kind)["settings"]["words"])


@pytest.fixture
def clean_registry():
    saved = dict(INDEXES._entries)
    yield
    INDEXES._entries.clear()
    INDEXES._entries.update(saved)


def test_load_index_dispatches_on_manifest_kind(tmp_path):
    bm25 = BM25Index()
    bm25.add(list(DOCS), list(DOCS.values()))
    bm25.save(tmp_path / "bm25")
    rs = np.random.RandomState(0)
    vectors = rs.randn(len(DOCS), 8).astype(np.float32)
    dense = DenseIndex()
    dense.add(list(DOCS), list(DOCS.values()), vectors=vectors)
    dense.save(tmp_path / "dense")

    loaded_bm25 = load_index(tmp_path / "bm25")
    loaded_dense = load_index(tmp_path / "dense", mmap=True)  # keyword arguments reach the class
    assert isinstance(loaded_bm25, BM25Index) and isinstance(loaded_dense, DenseIndex)
    assert isinstance(loaded_bm25, Index) and isinstance(loaded_dense, Index)  # the shared protocol
    assert [h.id for h in loaded_bm25.search(["heart attack"], k=2)[0]] == [
        h.id for h in bm25.search(["heart attack"], k=2)[0]
    ]
    assert [h.id for h in loaded_dense.search(vectors[:1], k=4)[0]] == [
        h.id for h in dense.search(vectors[:1], k=4)[0]
    ]
    # Both kinds hashed the same (id, text) pairs, so their corpus fingerprints agree.
    fp = [json.loads((tmp_path / k / "manifest.json").read_text())["corpus"] for k in ("bm25", "dense")]
    assert fp[0] == fp[1]


def test_registry_custom_kind_conflicts_and_unknown_kinds(tmp_path, clean_registry):
    assert {"bm25", "dense"} <= set(registered_index_kinds())
    ToyIndex(["a", "b"]).save(tmp_path / "toy")
    with pytest.raises(ManifestError, match="no class is registered.*register_index_kind"):
        load_index(tmp_path / "toy")
    register_index_kind("toy", ToyIndex)
    assert load_index(tmp_path / "toy").words == ["a", "b"]
    register_index_kind("toy", ToyIndex)  # same class again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_index_kind("toy", BM25Index)
    register_index_kind("toy", "tests_do_not_import:Nothing", replace=True)
    with pytest.raises(ModuleNotFoundError):
        load_index(tmp_path / "toy")
    register_index_kind("bm25", BM25Index)  # the class behind the built-in import string: no conflict
    with pytest.raises(TypeError, match="BaseIndex"):
        register_index_kind("broken", object())
    with pytest.raises(ValueError, match="module:"):
        register_index_kind("broken", "no_colon_here")


def test_load_index_refuses_non_index_directories(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_index(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_index(tmp_path / "empty")


def test_document_table_fingerprint_matches_corpus_fingerprint():
    for store_text in (True, False):
        table = DocumentTable(store_text=store_text)
        table.add(list(DOCS), list(DOCS.values()), [{"n": i} for i in range(len(DOCS))])
        table.add(["v1"])  # a vectors-only document: fingerprinted with text ""
        table.delete(["d2", "unknown"])
        ref = CorpusFingerprint()
        for doc_id, text in DOCS.items():
            if doc_id != "d2":
                ref.update(doc_id, text)
        ref.update("v1", "")
        assert table.corpus() == ref.as_dict()
        assert len(table) == 4 and table.n_positions == 5 and table.n_deleted == 1
        # compact keeps the fingerprint and renumbers positions
        old = table.compact()
        assert list(old) == [0, 2, 3, 4] and table.corpus() == ref.as_dict()
        assert table.position["v1"] == 3 and table.hit(0, 1.0).metadata == {"n": 0}
        assert table.hit(0, 1.0).text == (DOCS["d1"] if store_text else None)


def test_document_table_validation():
    table = DocumentTable()
    table.add(["a"], ["x"])
    with pytest.raises(ValueError, match="already in the index"):
        table.add(["a"], ["x"])
    with pytest.raises(ValueError, match="more than once"):
        table.add(["b", "b"], ["x", "y"])
    with pytest.raises(TypeError, match="single string"):
        table.add("abc")
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        table.add(["b", "c"], ["x"])
    with pytest.raises(TypeError, match="non-empty strings"):
        table.add([1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="mapping"):
        table.add(["b"], ["x"], [["not", "a", "dict"]])  # type: ignore[list-item]
    assert len(table) == 1  # failed batches changed nothing


def test_every_registered_index_kind_imports_and_names_itself():
    for kind in registered_index_kinds():
        try:
            cls = INDEXES.get(kind)
        except ImportError as exc:  # an optional backend (pyserini, pymilvus) not installed
            pytest.skip(f"{kind}: {exc}")
        assert issubclass(cls, BaseIndex) and cls.kind == kind and cls.help, kind
    assert INDEXES.normalize("Lucene_BM25") == "lucene-bm25"  # one normaliser for every lookup
    with pytest.raises(ManifestError, match="unknown index kind 'annoy'.*bm25"):
        make_index("annoy")


@pytest.mark.parametrize("kind", ["bm25", "dense", "sparse"])
def test_make_index_builds_each_kind_that_round_trips_through_load_index(tmp_path, kind):
    ids, texts = list(DOCS), list(DOCS.values())
    index = make_index(kind, store_text=True)
    if kind == "bm25":
        index.add(ids, texts)
        queries: list = ["heart attack"]
    elif kind == "dense":
        vectors = np.random.RandomState(0).randn(len(ids), 8).astype(np.float32)
        index.add(ids, texts, vectors=vectors)
        queries = vectors[:1]
    else:
        weights = [{w: 1.0 + len(w) / 10 for w in text.split()} for text in texts]
        index.add(ids, texts, weights=weights)
        queries = [{"heart": 1.0, "attack": 0.5}]
    assert type(index) is INDEXES.get(kind)
    before = [h.id for h in index.search(queries, k=3)[0]]
    index.save(tmp_path / kind)
    after = [h.id for h in load_index(tmp_path / kind).search(queries, k=3)[0]]
    assert before == after and len(before) >= 2
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(queries, k=0)


def test_make_index_names_the_bad_setting():
    with pytest.raises(TypeError, match="cannot build a 'bm25' index with settings.*no_such"):
        make_index("bm25", no_such=1)
    with pytest.raises(ValueError, match="not both"):
        make_index("dense", model="all-MiniLM-L6-v2", encoder=object())
