"""LocalDataset: explicit corpus / queries / qrels files (TSV, JSONL, TREC), built from TIME."""

from __future__ import annotations

import json

import pytest

from distilir.data import BeirDataset, DatasetError, LocalDataset, write_qrels


@pytest.fixture(scope="module")
def time_beir(data_dir) -> BeirDataset:
    return BeirDataset(data_dir / "time")


def _write_tsv_copy(ds: BeirDataset, folder) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "collection.tsv", "w", encoding="utf-8") as f:
        f.write("id\ttitle\ttext\n")
        for doc in ds.iter_corpus():
            f.write(f"{doc.id}\t{doc.title}\t{' '.join(doc.text.split())}\n")
    with open(folder / "queries.tsv", "w", encoding="utf-8") as f:
        for q in ds.queries().values():
            f.write(f"{q.id}\t{q.text}\n")
    write_qrels(ds.qrels("test"), folder / "qrels.test.txt")  # TREC 4-column form
    return {
        "corpus": folder / "collection.tsv",
        "queries": folder / "queries.tsv",
        "qrels": folder / "qrels.test.txt",
    }


def test_tsv_files_with_trec_qrels_match_the_beir_folder(tmp_path, time_beir):
    files = _write_tsv_copy(time_beir, tmp_path / "tsv")
    local = LocalDataset(**files, name="time-tsv")
    assert local.name == "time-tsv" and local.splits() == ["test"]
    assert local.counts() == time_beir.counts()
    assert local.qrels("test") == time_beir.qrels("test")
    assert local.queries("test") == time_beir.queries("test")
    beir_docs = time_beir.corpus()
    local_docs = local.corpus()
    assert local_docs.keys() == beir_docs.keys()
    doc_id = next(iter(beir_docs))
    assert local_docs[doc_id].text == " ".join(beir_docs[doc_id].text.split())
    assert set(local.describe()["files"]) == {
        "corpus:collection.tsv",
        "queries:queries.tsv",
        "qrels:test:qrels.test.txt",
    }


def test_jsonl_files_and_several_splits(tmp_path, time_beir):
    folder = tmp_path / "jsonl"
    folder.mkdir()
    with open(folder / "docs.jsonl", "w") as f:
        for doc in time_beir.iter_corpus():
            f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in time_beir.queries().values():
            f.write(json.dumps({"_id": q.id, "text": q.text}) + "\n")
    qrels = time_beir.qrels("test")
    qids = sorted(qrels)
    dev = {q: qrels[q] for q in qids[:10]}
    test = {q: qrels[q] for q in qids[10:]}
    write_qrels(dev, folder / "dev.tsv", format="beir")
    write_qrels(test, folder / "test.txt")
    local = LocalDataset(
        folder / "docs.jsonl",
        folder / "queries.jsonl",
        {"dev": folder / "dev.tsv", "test": folder / "test.txt"},
    )
    assert local.splits() == ["dev", "test"]
    assert local.qrels("dev") == dev and local.qrels("test") == test
    assert set(local.queries("dev")) == set(dev)
    assert local.corpus() == time_beir.corpus()


def test_sgml_topics_as_queries(tmp_path, time_beir):
    files = _write_tsv_copy(time_beir, tmp_path / "sgml")
    topics = tmp_path / "sgml" / "topics.txt"
    topics.write_text(
        "".join(
            f"<top>\n<num> Number: {q.id}\n<title> {q.text}\n</top>\n\n" for q in time_beir.queries().values()
        )
    )
    local = LocalDataset(files["corpus"], topics, files["qrels"])
    expected = {q.id: " ".join(q.text.split()) for q in time_beir.queries("test").values()}
    assert {q.id: q.text for q in local.queries("test").values()} == expected


def test_local_dataset_errors(tmp_path):
    (tmp_path / "c.tsv").write_text("d1\tone\td2\textra\n")
    (tmp_path / "q.tsv").write_text("q1\twhat\n")
    (tmp_path / "r.txt").write_text("q1 0 d1 1\n")
    with pytest.raises(DatasetError, match="qrels file .* does not exist"):
        LocalDataset(tmp_path / "c.tsv", tmp_path / "q.tsv", tmp_path / "nope.txt")
    (tmp_path / "c.csv").write_text("d1,one\n")
    with pytest.raises(DatasetError, match=r"c\.csv: cannot tell the format from the file name"):
        LocalDataset(tmp_path / "c.csv", tmp_path / "q.tsv", tmp_path / "r.txt")
    ds = LocalDataset(tmp_path / "c.tsv", tmp_path / "q.tsv", tmp_path / "r.txt")
    with pytest.raises(DatasetError, match=r"c\.tsv:1: expected 2 tab-separated columns"):
        ds.corpus()
