"""BEIR folders of the shared data pack, checked against the counts and sha256 values its README publishes."""

from __future__ import annotations

import itertools

import pytest

from distilir.data import BeirDataset, Dataset, DatasetError, load_dataset
from distilir.types import Document, Query

# dataset: (docs, queries in the file, {split: (judged queries, qrels)}) -- the data README's table.
PUBLISHED = {
    "scifact": (5183, 1109, {"test": (300, 339), "train": (809, 919)}),
    "arguana": (8674, 1406, {"test": (1406, 1406)}),
    "trec-dl-2019-passage-pool": (7230, 43, {"test": (43, 3212)}),
    "cranfield": (1400, 225, {"test": (225, 1837)}),
    "cacm": (3204, 64, {"test": (52, 796)}),
    "lisa": (5999, 35, {"test": (35, 379)}),
    "time": (423, 83, {"test": (82, 321)}),
    "vaswani": (11429, 93, {"test": (93, 2083)}),
}

ARGUANA_MISSING_DOCS = {
    "test-education-ufsdfkhbwu-con03b",
    "test-free-speech-debate-yfsdfkhbwu-con03b",
    "test-politics-dhwem-pro06b",
    "test-science-sghwbdgmo-con03b",
    "test-society-asfhwapg-con04b",
}


@pytest.fixture(scope="module")
def scifact(data_dir) -> BeirDataset:
    return BeirDataset(data_dir / "scifact")


def test_scifact_counts_match_beir(scifact):
    assert isinstance(scifact, Dataset)
    assert scifact.name == "scifact"
    assert scifact.splits() == ["test", "train"]
    assert len(scifact.corpus()) == 5183
    assert len(scifact.queries()) == 1109
    test_qrels, train_qrels = scifact.qrels("test"), scifact.qrels("train")
    assert (len(test_qrels), sum(map(len, test_qrels.values()))) == (300, 339)
    assert (len(train_qrels), sum(map(len, train_qrels.values()))) == (809, 919)
    assert len(scifact.queries("test")) == 300
    assert len(scifact.queries("train")) == 809
    # queries(split) holds exactly the judged queries, with texts from the file
    assert set(scifact.queries("test")) == set(test_qrels)
    assert all(isinstance(q, Query) and q.text for q in scifact.queries("test").values())


def test_streaming_corpus_matches_cached_corpus(scifact):
    streamed = list(scifact.iter_corpus())
    cached = scifact.corpus()
    assert len(streamed) == len(cached) == 5183
    assert {d.id: d for d in streamed} == cached
    assert list(cached)[:3] == [d.id for d in streamed[:3]]  # file order kept
    assert scifact.corpus() is cached  # loaded once
    # iter_corpus is a fresh generator each time (streams, does not hold the file in memory)
    first = next(scifact.iter_corpus())
    assert isinstance(first, Document) and first == streamed[0]


def test_documents_have_title_and_text(scifact):
    doc = scifact.corpus()["4983"]  # first document of BEIR scifact
    assert doc.title.startswith("Microstructural development of human newborn cerebral white matter")
    assert doc.text and doc.full_text == f"{doc.title} {doc.text}"


def test_qrels_are_independent_copies(scifact):
    qrels = scifact.qrels("test")
    qid = next(iter(qrels))
    qrels[qid]["injected"] = 1
    assert "injected" not in scifact.qrels("test")[qid]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_collection_matches_published_counts(data_dir, name):
    docs, queries, splits = PUBLISHED[name]
    ds = load_dataset(name, data_dir=data_dir)
    counts = ds.counts()
    assert counts["documents"] == docs
    assert counts["queries"] == queries
    assert counts["splits"] == {s: {"queries": q, "qrels": r} for s, (q, r) in splits.items()}


def test_describe_records_file_hashes_and_counts(scifact):
    info = scifact.describe()
    assert info["name"] == "scifact" and info["kind"] == "beir"
    # sha256 values published in the data README
    assert info["files"] == {
        "corpus.jsonl.gz": "54a5a3196c229e4a6e144efb05898f5658927a4b6b1d4dcaeef02ea6241f1235",
        "qrels/test.tsv": "68c0ac63f1c24b9e8ce497649694f09b2d0850bab7ec2b103cc66996f5f8b3a3",
        "qrels/train.tsv": "ac0902d9b1cb717df182aaff1306175877fdb8f55bb5c3e8597ad694fc8e539f",
        "queries.jsonl.gz": "3794f9ee3a6cd2e9a5d8b217e9275bfd06612e801ddf25bb8f224783e9b330af",
    }
    assert info["counts"]["documents"] == 5183


def test_arguana_loads_despite_known_missing_documents(data_dir):
    ds = load_dataset("arguana", data_dir=data_dir)
    assert len(ds.corpus()) == 8674 and len(ds.queries()) == 1406
    assert len(ds.queries("test")) == 1406
    report = ds.validate()
    assert not report.ok
    assert report.unknown_documents == 5 and report.unknown_queries == 0
    assert {doc for _, doc in report.issues[0].examples} == ARGUANA_MISSING_DOCS
    assert "5 qrels point to documents that are not in the corpus" in report.summary()
    with pytest.raises(DatasetError, match="not in the corpus"):
        ds.validate(strict=True)


def test_scifact_validates_clean(scifact):
    report = scifact.validate(strict=True)
    assert report.ok and report.counts["documents"] == 5183


def test_runs_shipped_with_a_folder(data_dir, scifact):
    runs = load_dataset("trec-dl-2019-passage-pool", data_dir=data_dir).runs()
    assert sorted(runs) == ["bm25.top100", "contriever.top100"]
    assert all(p.is_file() and p.suffix == ".trec" for p in runs.values())
    assert scifact.runs() == {}


def test_corpus_metadata_keeps_extra_fields(tmp_path):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "one", "url": "http://x"}\n{"_id": 2, "text": "two"}\n'
    )
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "what"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    docs = list(itertools.islice(BeirDataset(folder).iter_corpus(), 2))
    assert docs[0].metadata == {"url": "http://x"} and docs[0].title == "T"
    assert docs[1].id == "2" and docs[1].title == "" and docs[1].full_text == "two"
