"""TREC runs, qrels, topics: round trips, tie order (checked against pytrec_eval), atomic writes."""

from __future__ import annotations

import pytest
import pytrec_eval

from distilir.data import DatasetError, read_qrels, read_run, read_topics, write_qrels, write_run
from distilir.data._io import atomic_write


@pytest.fixture(scope="module")
def bm25_run_path(data_dir):
    return data_dir / "trec-dl-2019-passage-pool" / "runs" / "bm25.top100.trec"


def test_read_shipped_run(bm25_run_path):
    run = read_run(bm25_run_path)
    assert len(run) == 43
    assert sum(len(d) for d in run.values()) == sum(1 for line in bm25_run_path.open() if line.strip())
    assert run["264014"]["5611210"] == pytest.approx(15.7806)  # first line of the file


def test_run_write_read_round_trip_is_exact(tmp_path, bm25_run_path):
    run = read_run(bm25_run_path)
    # scores with many significant digits must survive exactly
    run["264014"]["5611210"] = 0.1 + 0.2
    out = write_run(run, tmp_path / "sub" / "run.trec", tag="rt")
    assert read_run(out) == run
    # ranks in the written file follow descending score
    lines = [line.split() for line in out.read_text().splitlines() if line.startswith("264014 ")]
    scores = [float(c[4]) for c in lines]
    assert scores == sorted(scores, reverse=True)
    assert [int(c[3]) for c in lines] == list(range(1, len(lines) + 1))
    assert {c[5] for c in lines} == {"rt"} and {c[1] for c in lines} == {"Q0"}


def test_gzip_run_round_trip(tmp_path):
    run = {"q1": {"d1": 1.5, "d2": -0.25}}
    path = write_run(run, tmp_path / "run.trec.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert read_run(path) == run


def test_ties_are_ordered_deterministically_like_trec_eval(tmp_path):
    a = {"q2": {"x": 0.5}, "q1": {"b": 1.0, "a": 1.0, "c": 2.0, "d": 1.0}}
    b = {"q1": {"d": 1.0, "c": 2.0, "a": 1.0, "b": 1.0}, "q2": {"x": 0.5}}  # same run, other dict order
    pa, pb = write_run(a, tmp_path / "a.trec"), write_run(b, tmp_path / "b.trec")
    assert pa.read_bytes() == pb.read_bytes()
    rows = [line.split() for line in pa.read_text().splitlines()]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("q1", "c", "1"),
        ("q1", "d", "2"),  # ties: descending doc id, as trec_eval sorts them
        ("q1", "b", "3"),
        ("q1", "a", "4"),
        ("q2", "x", "1"),
    ]
    # The reference evaluator agrees with our rank column: only "b" is relevant, we wrote it at rank 3.
    evaluator = pytrec_eval.RelevanceEvaluator({"q1": {"b": 1}}, {"recip_rank"})
    assert evaluator.evaluate(read_run(pa))["q1"]["recip_rank"] == pytest.approx(1 / 3)


def test_write_run_depth_and_validation(tmp_path):
    run = {"q": {f"d{i}": float(i) for i in range(10)}}
    path = write_run(run, tmp_path / "top3.trec", depth=3)
    assert [line.split()[2] for line in path.read_text().splitlines()] == ["d9", "d8", "d7"]
    with pytest.raises(DatasetError, match="not a finite number"):
        write_run({"q": {"d": float("nan")}}, tmp_path / "nan.trec")
    with pytest.raises(DatasetError, match="without spaces"):
        write_run({"q": {"d 1": 1.0}}, tmp_path / "space.trec")
    with pytest.raises(DatasetError, match="tag"):
        write_run(run, tmp_path / "tag.trec", tag="two words")
    assert not (tmp_path / "nan.trec").exists()


def test_read_run_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 x t\n")
    with pytest.raises(DatasetError, match=r"bad\.trec:2: score 'x' is not a number"):
        read_run(path)
    path.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n")
    with pytest.raises(DatasetError, match=r"bad\.trec:2: document 'd1' is listed twice"):
        read_run(path)
    path.write_text("q1 Q0 d1 1 2.0\n")
    with pytest.raises(DatasetError, match=r"bad\.trec:1: expected 6 whitespace-separated columns"):
        read_run(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_run(tmp_path / "missing.trec")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("half of the new content")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp file left behind


def test_qrels_round_trip_in_both_formats(tmp_path, data_dir):
    qrels = read_qrels(data_dir / "trec-dl-2019-passage-pool" / "qrels" / "test.tsv")
    assert len(qrels) == 43 and sum(map(len, qrels.values())) == 3212
    trec = write_qrels(qrels, tmp_path / "qrels.txt")
    beir = write_qrels(qrels, tmp_path / "qrels.tsv", format="beir")
    assert trec.read_text().splitlines()[0].split()[1] == "0"
    assert beir.read_text().startswith("query-id\tcorpus-id\tscore\n")
    assert read_qrels(trec, format="trec") == qrels
    assert read_qrels(beir, format="beir") == qrels
    assert read_qrels(trec) == read_qrels(beir) == qrels  # auto-detected
    with pytest.raises(DatasetError, match="expected 4 columns"):
        read_qrels(beir, format="trec")


SGML_TOPICS = """<top>
<num> Number: 301
<title> International Organized Crime

<desc> Description:
Identify organizations that participate in international criminal
activity.

<narr> Narrative:
A relevant document must, as a minimum, identify the organization.
</top>

<top>
<num> Number: 302
<title> Topic: Poliomyelitis and Post-Polio
<desc> Description:
Is the disease of Poliomyelitis (polio) under control?
</top>
"""


def test_read_classic_sgml_topics(tmp_path):
    path = tmp_path / "topics.301-302.txt"
    path.write_text(SGML_TOPICS)
    topics = read_topics(path)
    assert {q: t.text for q, t in topics.items()} == {
        "301": "International Organized Crime",
        "302": "Poliomyelitis and Post-Polio",
    }
    both = read_topics(path, fields=("title", "desc"))
    assert both["301"].text == (
        "International Organized Crime "
        "Identify organizations that participate in international criminal activity."
    )
    with pytest.raises(DatasetError, match="fields must be"):
        read_topics(path, fields=("body",))


def test_read_sgml_topics_with_closing_tags(tmp_path):
    path = tmp_path / "query-text.trec"
    path.write_text(
        "<top>\n<num>1</num><title>\nMEASUREMENT OF DIELECTRIC CONSTANT\n</title>\n</top>\n"
        "<top><num>2</num><title>MATHEMATICAL ANALYSIS</title></top>\n"
    )
    topics = read_topics(path)
    assert [(q.id, q.text) for q in topics.values()] == [
        ("1", "MEASUREMENT OF DIELECTRIC CONSTANT"),
        ("2", "MATHEMATICAL ANALYSIS"),
    ]


def test_sgml_topic_without_num_names_the_line(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("<top>\n<num> Number: 1\n<title> ok\n</top>\n\n<top>\n<title> no number\n</top>\n")
    with pytest.raises(DatasetError, match=r"broken\.txt:6: topic has no <num> tag"):
        read_topics(path)


def test_read_tsv_topics(tmp_path):
    path = tmp_path / "topics.tsv"
    path.write_text("1037798\twho is robert gray\n104861\tcost of interior concrete flooring\n")
    topics = read_topics(path)
    assert topics["104861"].text == "cost of interior concrete flooring" and len(topics) == 2
