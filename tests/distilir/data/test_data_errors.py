"""Bad input: every error names the file, the line and what was expected. Files are written into tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from distilir.data import BeirDataset, DatasetError, DatasetWarning, read_qrels

QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def make_beir(
    root: Path,
    corpus: str = '{"_id": "d1", "title": "", "text": "alpha"}\n{"_id": "d2", "title": "", "text": "beta"}\n',
    queries: str = '{"_id": "q1", "text": "alpha?"}\n{"_id": "q2", "text": "beta?"}\n',
    qrels: str | None = QRELS_HEADER + "q1\td1\t1\nq2\td2\t2\n",
    gz: bool = False,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write(corpus)
    else:
        (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    if qrels is not None:
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


def test_a_well_formed_tiny_folder_loads(tmp_path):
    ds = BeirDataset(make_beir(tmp_path / "ok", gz=True))
    assert sorted(ds.corpus()) == ["d1", "d2"]
    assert ds.qrels("test") == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert ds.validate().ok


def test_malformed_json_line_names_file_and_line(tmp_path):
    corpus = '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n{"_id": "d3", "text": "c"\n'
    ds = BeirDataset(make_beir(tmp_path / "bad", corpus=corpus))
    with pytest.raises(DatasetError) as err:
        list(ds.iter_corpus())
    message = str(err.value)
    assert f"{ds.path / 'corpus.jsonl'}:3:" in message
    assert "malformed JSON" in message and "one JSON object per line" in message


def test_malformed_json_in_gzip_file_still_names_the_line(tmp_path):
    corpus = '{"_id": "d1", "text": "a"}\n\n{"_id": d2}\n'
    ds = BeirDataset(make_beir(tmp_path / "badgz", corpus=corpus, gz=True))
    with pytest.raises(DatasetError, match=r"corpus\.jsonl\.gz:3: malformed JSON"):
        ds.corpus()


def test_missing_id_names_the_line(tmp_path):
    queries = '{"_id": "q1", "text": "x"}\n{"id": "q2", "text": "y"}\n'
    ds = BeirDataset(make_beir(tmp_path / "noid", queries=queries))
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: query has no '_id' field"):
        ds.queries()


def test_missing_text_field_is_an_error(tmp_path):
    ds = BeirDataset(make_beir(tmp_path / "notext", corpus='{"_id": "d1", "title": "only a title"}\n'))
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:1: missing 'text' field"):
        ds.corpus()


def test_missing_qrels_folder_lists_the_expected_files(tmp_path):
    folder = make_beir(tmp_path / "noqrels", qrels=None)
    with pytest.raises(DatasetError) as err:
        BeirDataset(folder)
    message = str(err.value)
    assert "qrels/<split>.tsv" in message
    assert "corpus.jsonl" in message and "queries.jsonl" in message  # the files found are listed


def test_missing_corpus_file(tmp_path):
    folder = make_beir(tmp_path / "nocorpus")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"missing corpus\.jsonl or corpus\.jsonl\.gz"):
        BeirDataset(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        BeirDataset(tmp_path / "nowhere")


@pytest.mark.parametrize("score", ["abc", "0.5", ""])
def test_bad_qrels_score_names_file_and_line(tmp_path, score):
    folder = make_beir(tmp_path / "badscore", qrels=QRELS_HEADER + f"q1\td1\t1\nq2\td2\t{score}\n")
    ds = BeirDataset(folder)
    with pytest.raises(DatasetError) as err:
        ds.qrels("test")
    assert f"{folder / 'qrels' / 'test.tsv'}:3:" in str(err.value)


def test_integral_float_grade_is_accepted(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text(QRELS_HEADER + "q1\td1\t2.0\n")
    assert read_qrels(path) == {"q1": {"d1": 2}}


def test_qrels_with_wrong_column_count(tmp_path):
    folder = make_beir(tmp_path / "cols", qrels=QRELS_HEADER + "q1\td1\t1\nq2\td2\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:3: expected 3 columns 'query-id corpus-id score'"):
        BeirDataset(folder).qrels("test")


def test_conflicting_duplicate_judgments(tmp_path):
    folder = make_beir(tmp_path / "dup", qrels=QRELS_HEADER + "q1\td1\t1\nq1\td1\t2\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:3: \(q1, d1\) is judged 2 here but 1 at line 2"):
        BeirDataset(folder).qrels("test")


def test_duplicate_document_ids(tmp_path):
    corpus = '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'
    with pytest.raises(DatasetError, match="'d1' appears twice"):
        BeirDataset(make_beir(tmp_path / "dupdoc", corpus=corpus)).corpus()


def test_unknown_split_lists_available_ones(tmp_path):
    ds = BeirDataset(make_beir(tmp_path / "split"))
    with pytest.raises(DatasetError, match=r"no split 'dev'; available splits: \['test'\]"):
        ds.qrels("dev")


def test_validate_counts_unknown_documents_and_queries(tmp_path):
    qrels = QRELS_HEADER + "q1\td1\t1\nq1\tghost1\t1\nq2\tghost2\t0\nq9\td2\t1\n"
    ds = BeirDataset(make_beir(tmp_path / "unknown", qrels=qrels))
    # loading does not fail on them
    assert len(ds.qrels("test")) == 3
    report = ds.validate()
    assert not report.ok
    assert report.unknown_documents == 2
    assert report.unknown_queries == 1
    kinds = {i.kind: i for i in report.issues}
    assert kinds["unknown_document"].examples == (("q1", "ghost1"), ("q2", "ghost2"))
    assert kinds["unknown_query"].examples == (("q9", ""),)
    assert report.to_dict()["issues"][0]["count"] in (1, 2)
    with pytest.raises(DatasetError, match="2 qrels point to documents that are not in the corpus"):
        ds.validate(strict=True)
    # the judged query without a text is left out of queries(split), with a warning
    with pytest.warns(DatasetWarning, match="1 of 3 queries judged in split 'test' have no text"):
        assert sorted(ds.queries("test")) == ["q1", "q2"]
