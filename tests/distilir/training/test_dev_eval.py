"""Dev evaluation during training, checked against a run built by hand with sentence-transformers'
own ``encode`` and ir_measures."""

from __future__ import annotations

import dataclasses
import warnings

import ir_measures
import numpy as np
import pytest
import torch

from distilir.data.trec import sorted_ranking, write_run
from distilir.training import DevEvaluator, EvalConfig


@pytest.fixture(scope="module")
def student(minilm_path):
    from distilir.students import BiEncoderStudent

    return BiEncoderStudent(minilm_path, max_length=64)  # short inputs keep the test fast


@pytest.fixture(scope="module")
def minilm(student):
    """The student's own SentenceTransformer: its ``encode`` is the reference."""
    return student.model


def _reference_run(minilm, queries, doc_ids, doc_texts):
    q = minilm.encode([queries[k] for k in sorted(queries)], convert_to_numpy=True)
    d = minilm.encode(doc_texts, convert_to_numpy=True, batch_size=64)
    sims = q @ d.T
    return {
        qid: {doc_ids[j]: float(sims[i, j]) for j in range(len(doc_ids))}
        for i, qid in enumerate(sorted(queries))
    }


def test_rerank_matches_a_hand_built_run(student, minilm, scifact, tmp_path):
    qrels = scifact.qrels("test")
    corpus = scifact.corpus()
    qids = sorted(qrels)[:8]
    rng = np.random.default_rng(5)
    ids = sorted(corpus)
    cands = {q: list(qrels[q]) + [ids[i] for i in rng.choice(len(ids), 4, replace=False)] for q in qids}
    write_run({q: {d: float(-k) for k, d in enumerate(ds)} for q, ds in cands.items()}, tmp_path / "c.trec")
    config = EvalConfig(
        dataset="scifact",
        split="test",
        mode="rerank",
        candidates=str(tmp_path / "c.trec"),
        depth=20,
        k=20,
        max_queries=4,
    )
    ev = DevEvaluator(config, seed=3)
    metrics = ev(student)
    assert list(metrics) == ["nDCG@10", "RR@10", "R@20"]
    assert len(ev.qids) == 4 and set(ev.qids) <= set(qids)  # a seeded sample of the file's judged queries

    queries = {q: scifact.queries("test")[q].text for q in ev.qids}
    reference = {}
    for q in ev.qids:
        part = _reference_run(minilm, {q: queries[q]}, cands[q], [corpus[d].full_text for d in cands[q]])
        reference.update(part)
    expected = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10, ir_measures.RR @ 10], {q: qrels[q] for q in ev.qids}, reference
    )
    assert metrics["nDCG@10"] == pytest.approx(expected[ir_measures.nDCG @ 10], abs=1e-6)
    assert metrics["RR@10"] == pytest.approx(expected[ir_measures.RR @ 10], abs=1e-6)
    run = ev.run(student)
    for q in ev.qids:
        assert run[q] == pytest.approx(reference[q], abs=1e-5)


def test_retrieve_over_a_corpus_slice_matches_exact_search(student, minilm, scifact):
    config = EvalConfig(
        dataset="scifact", split="test", mode="retrieve", k=10, max_queries=4, corpus_sample=16, batch_size=32
    )
    ev = DevEvaluator(config, seed=1)
    torch_state = torch.get_rng_state()
    metrics = ev(student)
    assert torch.equal(torch.get_rng_state(), torch_state)  # evaluation leaves the generators alone
    qrels = scifact.qrels("test")
    judged = {d for q in ev.qids for d in qrels[q]}
    assert judged <= set(ev.doc_ids) and len(ev.doc_ids) == len(judged) + 16

    queries = {q: scifact.queries("test")[q].text for q in ev.qids}
    reference = _reference_run(minilm, queries, ev.doc_ids, ev.doc_texts)
    top10 = {q: dict(sorted(r.items(), key=lambda x: -x[1])[:10]) for q, r in reference.items()}
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {q: qrels[q] for q in ev.qids}, top10)
    assert metrics["nDCG@10"] == pytest.approx(expected[ir_measures.nDCG @ 10], abs=1e-6)
    run = ev.run(student)
    for q in ev.qids:
        assert list(run[q]) == list(top10[q])


def test_cross_encoders_cannot_use_retrieve_mode():
    with pytest.raises(ValueError, match="rerank"):
        DevEvaluator(EvalConfig(dataset="scifact", mode="retrieve"), student_kind="cross_encoder")


def test_splade_retrieve_matches_the_sparse_encoder(splade_path):
    """Sparse (vocabulary-sized) vectors take the sparse path; the ranking equals SparseEncoder's own."""
    from distilir.students import SpladeStudent

    student = SpladeStudent(splade_path, max_length=64)
    ev = DevEvaluator(
        EvalConfig(dataset="scifact", mode="retrieve", k=10, max_queries=3, corpus_sample=10, batch_size=8)
    )
    metrics = ev(student)
    q = student.model.encode_query([ev.queries[x] for x in ev.qids], convert_to_tensor=True).to_dense()
    d = student.model.encode_document(ev.doc_texts, convert_to_tensor=True).to_dense()
    sims = q @ d.T
    run = ev.run(student)
    for i, qid in enumerate(ev.qids):
        top = torch.topk(sims[i], 10)
        assert list(run[qid]) == [ev.doc_ids[j] for j in top.indices.tolist()]
        assert list(run[qid].values()) == pytest.approx(top.values.tolist(), abs=1e-4)
    assert 0.0 <= metrics["nDCG@10"] <= 1.0


def test_measures_past_the_list_depth_are_dropped_with_a_warning(student, scifact, tmp_path):
    """Reranking 20 candidates cannot tell R@100 from R@20: R@100 is not reported, and one warning
    says why, naming the depth."""
    qids = sorted(scifact.qrels("test"))[:2]
    write_run({q: {d: 1.0 for d in scifact.qrels("test")[q]} for q in qids}, tmp_path / "c.trec")
    config = EvalConfig(dataset="scifact", candidates=str(tmp_path / "c.trec"), depth=20)  # k: 100
    with pytest.warns(
        UserWarning, match=r"not reporting R@100: each evaluated list holds 20 documents"
    ) as got:
        ev = DevEvaluator(config)
    assert len(got) == 1 and "eval.depth 20" in str(got[0].message)
    assert list(ev(student)) == ["nDCG@10", "RR@10"]


def test_rerank_keeps_the_top_k_of_the_reranked_depth(student, scifact, tmp_path):
    qrels = scifact.qrels("test")
    ids = sorted(scifact.corpus())
    qids = sorted(qrels)[:2]
    write_run({q: {d: 1.0 for d in list(qrels[q]) + ids[:6]} for q in qids}, tmp_path / "c.trec")
    every = DevEvaluator(EvalConfig(dataset="scifact", candidates=str(tmp_path / "c.trec")))  # k: 100
    config = EvalConfig(dataset="scifact", candidates=str(tmp_path / "c.trec"), k=3, metric="nDCG@3")
    with pytest.warns(UserWarning, match="not reporting RR@10"):
        top3 = DevEvaluator(config)
    full, run = every.run(student), top3.run(student)
    for q in qids:
        assert len(full[q]) > 3
        assert list(run[q]) == [d for d, _ in sorted_ranking(full[q])[:3]]
        assert run[q] == pytest.approx({d: full[q][d] for d in run[q]}, abs=1e-5)
    assert list(top3(student)) == ["nDCG@3", "R@3"]


def _train_split_candidates(scifact, path, qids):
    qrels = scifact.qrels("train")
    write_run({q: {d: 1.0 for d in list(qrels[q]) + ["4983"]} for q in qids}, path)


def test_evaluating_on_training_queries_is_warned_about(scifact, tmp_path):
    """Evaluated queries that were trained on overstate held-out quality: a warning names how many,
    the manifest's description records it; left out, or from another collection, nothing is said."""
    qids = sorted(q for q in scifact.qrels("train") if q in scifact.queries("train"))[:4]
    _train_split_candidates(scifact, tmp_path / "c.trec", qids)
    config = EvalConfig(dataset="scifact", split="train", candidates=str(tmp_path / "c.trec"))
    ev = DevEvaluator(config, training_queries=qids[:3], training_dataset="scifact")
    with pytest.warns(
        UserWarning, match=r"3 of the 4 evaluated queries of scifact split 'train' are training"
    ):
        ev.prepare()
    assert ev.describe()["training_queries_evaluated"] == 3

    left_out = dataclasses.replace(config, exclude_training_queries=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = DevEvaluator(left_out, training_queries=qids[:3], training_dataset="scifact")
        ev.prepare()
        assert ev.qids == qids[3:] and ev.describe()["training_queries_evaluated"] == 0
        other = DevEvaluator(config, training_queries=qids[:3], training_dataset="arguana")
        other.prepare()  # the same ids in another collection are other queries
        assert other.describe()["training_queries_evaluated"] is None
