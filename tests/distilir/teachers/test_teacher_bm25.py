"""BM25Teacher equals the BM25 first stage (distilir_index.BM25Index, same analyser) and bm25s on a real
collection, and the formula."""

from __future__ import annotations

import math

import bm25s
import numpy as np
import pytest
import Stemmer

from distilir.teachers.base import TeacherError
from distilir.teachers.bm25 import BM25Stats, BM25Teacher


@pytest.fixture(scope="module")
def cranfield(data_dir, beir_reader):
    queries, corpus, _ = beir_reader(data_dir / "cranfield")
    return queries, corpus


def test_equals_bm25s_scores_on_cranfield(cranfield):
    queries, corpus = cranfield
    ids, texts = list(corpus), list(corpus.values())
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )

    teacher = BM25Teacher(corpus, stemmer="english", tokenizer="bm25s")  # bm25s' own analyser
    assert teacher.stats.n_docs == len(corpus)
    rng = np.random.default_rng(0)
    qids = list(queries)[:8]
    q_texts, lists, refs = [], [], []
    for qid in qids:
        q_tokens = bm25s.tokenize(
            [queries[qid]], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )[0]
        full = retriever.get_scores(q_tokens)
        top = np.argsort(-full)[:15]
        pick = list(dict.fromkeys([*top.tolist(), *rng.choice(len(ids), 15, replace=False).tolist()]))
        q_texts.append(queries[qid])
        lists.append([texts[i] for i in pick])
        refs.append(full[pick])
    ours = teacher.score_many(q_texts, lists)
    for got, ref in zip(ours, refs, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)  # bm25s keeps float32
    assert max(max(r) for r in refs) > 5  # real matches, not all zeros
    assert teacher.score(q_texts[0], lists[0]) == ours[0]


def test_default_teacher_is_the_bm25_first_stage_function(cranfield):
    """``bm25`` means one function: the default teacher scores a corpus document exactly as the BM25
    index of the first stage does (same analyser, same statistics)."""
    from distilir_index.bm25 import BM25Index

    queries, corpus = cranfield
    index = BM25Index(show_progress=False)
    index.add(list(corpus), list(corpus.values()))
    teacher = BM25Teacher(corpus)
    assert (
        (teacher.stats.stemmer, teacher.stats.tokenizer)
        == (index.stemmer, index.tokenizer)
        == (
            "porter",
            "lucene",
        )
    )
    for qid in list(queries)[:8]:
        hits = index.search([queries[qid]], k=20)[0]
        got = teacher.score(queries[qid], [corpus[h.id] for h in hits])
        np.testing.assert_allclose(got, [h.score for h in hits], rtol=1e-5, atol=1e-5)
        assert hits[0].score > 5


def test_formula_by_hand_and_unseen_documents():
    corpus = ["the cat sat on the mat", "dogs chase cats", "a bird sings"]
    teacher = BM25Teacher(corpus, k1=1.2, b=0.75)
    # tokens after stop words + stemming: [cat, sat, mat], [dog, chase, cat], [bird, sing]
    n, avgdl = 3, 8 / 3
    assert teacher.stats.n_docs == n and teacher.stats.avgdl == pytest.approx(avgdl)

    def idf(df):
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def term(tf, dl):
        return tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    # a document outside the corpus: "cats and cats and mats, zebra" -> [cat, cat, mat, zebra], |d| = 4
    doc = "cats and cats and mats, zebra"
    expected = idf(2) * term(2, 4) + idf(1) * term(1, 4)  # "zebra" is not in the corpus: contributes 0
    assert teacher.score("cat mat zebra", [doc])[0] == pytest.approx(expected, rel=1e-12)
    # query terms count with their multiplicity (as in bm25s); unknown or empty queries score 0
    assert teacher.score("cat cat", [corpus[0]])[0] == pytest.approx(2 * idf(2) * term(1, 3), rel=1e-12)
    assert teacher.score("zebra", corpus) == [0.0, 0.0, 0.0]
    assert teacher.score("", ["anything"]) == [0.0]


def test_stats_round_trip_fingerprint_and_errors():
    stats = BM25Stats.from_texts(["alpha beta", "beta gamma delta"])
    teacher = BM25Teacher(stats=stats.to_dict())
    assert teacher.score("beta", ["beta beta"]) == BM25Teacher(["alpha beta", "beta gamma delta"]).score(
        "beta", ["beta beta"]
    )
    other = BM25Teacher(["alpha beta", "beta gamma"])
    assert teacher.fingerprint != other.fingerprint  # another corpus is another teacher
    assert BM25Teacher(stats=stats, k1=1.2).fingerprint != teacher.fingerprint
    cfg = teacher.get_config_dict()
    assert cfg["method"] == "lucene" and cfg["corpus"]["n_docs"] == 2 and teacher.score_type == "bm25"
    with pytest.raises(TeacherError, match="exactly one"):
        BM25Teacher()
    with pytest.raises(TeacherError, match="b must be"):
        BM25Teacher(["x y"], b=2)
    with pytest.raises(TeacherError, match="empty"):
        BM25Teacher([])
