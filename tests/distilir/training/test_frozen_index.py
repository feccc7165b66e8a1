"""Query-side distillation on a frozen index: the losses against their formulas, score scales by hand,
the dev split, and a real (tiny) run on scifact documents with all-MiniLM-L6-v2: the index files stay
byte-identical, the saved encoder is accepted for that index and refused for an index of another
document encoder. The teacher scores in the run are a stand-in built from the qrels (said here)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import torch

from distilir.training.frozen_index import (
    FrozenIndexError,
    QuerySideConfig,
    free_query_bound,
    full_corpus_infonce,
    full_corpus_kl,
    split_dev,
    train_query_encoder,
)
from distilir.training.scales import calibrate_margin_scale, normalize_per_query


def test_normalize_per_query_by_hand():
    t = torch.tensor([[1.0, 2.0, 3.0, 0.0], [5.0, 5.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = normalize_per_query(t, mask, "zscore")
    row = np.array([1.0, 2.0, 3.0])
    assert torch.allclose(
        z[0, :3], torch.tensor((row - row.mean()) / row.std(), dtype=torch.float32), atol=1e-5
    )
    assert z[0, 3] == 0
    mm = normalize_per_query(t, mask, "minmax")
    assert torch.allclose(mm[0, :3], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(mm[1], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.equal(normalize_per_query(t, mask, "none")[1], t[1])
    with pytest.raises(ValueError, match="normalization"):
        normalize_per_query(t, mask, "softmax")


def test_calibrate_margin_scale_by_hand():
    s = torch.tensor([[0.9, 0.5, 0.1]])
    t = torch.tensor([[10.0, 6.0, 2.0]])
    # student mean |gap| over ordered pairs incl. diagonal: (0 .4 .8 .4 0 .4 .8 .4 0)/9; teacher x10
    assert math.isclose(calibrate_margin_scale(s, t), 0.1, rel_tol=1e-5)
    assert calibrate_margin_scale(s, torch.ones(1, 3)) == 1.0


def test_full_corpus_kl_is_the_formula():
    torch.manual_seed(0)
    full = torch.randn(2, 7)
    rows = torch.tensor([[3, 1, 5], [0, 6, 0]])
    teacher = torch.tensor([[2.0, 1.0, 0.5], [1.0, 3.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    got = full_corpus_kl(full, rows, teacher, mask, tau_s=0.5, tau_t=2.0)
    total = 0.0
    for q in range(2):
        log_ps = full[q] / 0.5 - torch.logsumexp(full[q] / 0.5, 0)
        valid = [i for i in range(3) if mask[q, i]]
        pt = torch.softmax(teacher[q, valid] / 2.0, 0)
        total += -sum(float(pt[j]) * float(log_ps[rows[q, i]]) for j, i in enumerate(valid))
    assert math.isclose(float(got), total / 2, rel_tol=1e-5)


def test_full_corpus_infonce_masks_teacher_false_negatives():
    full = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    rows = torch.tensor([[0, 2, 3]])
    teacher = torch.tensor([[5.0, 4.9, 0.0]])  # column 2 (row 2) is nearly as good as the positive
    mask = torch.ones(1, 3, dtype=torch.bool)
    got = full_corpus_infonce(full, rows, teacher, mask, tau_s=1.0, threshold=0.9)
    keep = torch.tensor([1.0, 2.0, 0.5])  # doc 2 left out of the softmax
    assert math.isclose(float(got), float(-(keep[0] - torch.logsumexp(keep, 0))), rel_tol=1e-6)
    unmasked = full_corpus_infonce(full, rows, teacher, mask, tau_s=1.0, threshold=1.1)
    assert math.isclose(float(unmasked), float(-(full[0, 0] - torch.logsumexp(full[0], 0))), rel_tol=1e-6)


def test_free_query_bound_fits_the_teacher_order_on_frozen_documents():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(200, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(200)]
    qids = [f"q{i}" for i in range(5)]
    init = rng.normal(size=(5, 16)).astype(np.float32)
    init /= np.linalg.norm(init, axis=1, keepdims=True)
    rows = np.stack([rng.choice(200, size=6, replace=False) for _ in range(5)])
    # the teacher's best of each list is rows[:, 0]
    teacher = {q: {ids[r]: float(6 - j) for j, r in enumerate(rows[i])} for i, q in enumerate(qids)}
    teacher["q9"] = {"d1": 1.0, "d2": 0.0}  # a query not asked for is not fitted
    fitted = free_query_bound(init, docs, ids, teacher, qids, steps=300, lr=0.05)
    assert sorted(fitted) == qids
    vecs = np.stack([fitted[q] for q in qids])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert (np.argmax(vecs @ docs.T, axis=1) == rows[:, 0]).all()  # now the full-corpus top document
    assert not (np.argmax(init @ docs.T, axis=1) == rows[:, 0]).all()  # it was not before


def test_split_dev_is_seeded_and_disjoint():
    ids = [f"q{i}" for i in range(100)]
    train, dev = split_dev(ids, 0.2, seed=1)
    assert len(dev) == 20 and not set(train) & set(dev) and sorted(train + dev) == sorted(ids)
    assert split_dev(list(reversed(ids)), 0.2, seed=1) == (train, dev)
    assert split_dev(ids, 0.2, seed=2)[1] != dev
    with pytest.raises(FrozenIndexError):
        split_dev(ids[:10], 0.5, minimum=20)


def test_config_is_validated():
    with pytest.raises(FrozenIndexError, match="normalization"):
        QuerySideConfig(normalization="rank")
    with pytest.raises(FrozenIndexError, match="weights"):
        QuerySideConfig(full_kl=0.0)


def _hashes(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, minilm_path):
    from distilir_index.dense import DenseIndex
    from distilir_index.encoders import DenseEncoder

    from distilir.data import load_dataset

    ds = load_dataset("scifact")
    qrels = ds.qrels("train")
    queries = ds.queries("train")
    qids = sorted(qrels)[:24]
    relevant = sorted({d for q in qids for d in qrels[q]})
    others = sorted(set(ds.corpus()) - set(relevant))[:40]
    docs = [ds.corpus()[d] for d in relevant + others]
    index = DenseIndex(DenseEncoder(minilm_path, max_length=128))
    index.add([d.id for d in docs], [d.full_text for d in docs])
    path = tmp_path_factory.mktemp("idx") / "dense"
    index.save(path)
    # stand-in teacher (test only): the judged documents first, then the base model's own order
    base = index.search([queries[q].text for q in qids], k=12)
    teacher = {}
    for q, hits in zip(qids, base, strict=True):
        scores = {h.id: float(h.score) for h in hits}
        scores.update({d: 5.0 for d in qrels[q]})
        teacher[q] = scores
    texts = {q: queries[q].text for q in qids}
    return path, texts, teacher, qrels


def _train_dev(texts):
    """The fixture's 24 queries: 16 to train on, 8 for dev selection."""
    items = list(texts.items())
    return dict(items[:16]), dict(items[16:])


def test_query_side_run_leaves_the_index_unchanged_and_pairs_only_with_it(small_index, tmp_path):
    from distilir_index import Retriever
    from distilir_index.dense import DenseIndex
    from distilir_index.encoders import DenseEncoder, EncoderMismatch

    path, texts, teacher, qrels = small_index
    before = _hashes(path)
    train, dev = _train_dev(texts)
    cfg = QuerySideConfig(
        batch_size=8, epochs=1, eval_every=1, lr=5e-5, infonce=0.1, list_kl=0.5, margin_mse=0.5
    )
    summary = train_query_encoder(
        path,
        train,
        teacher,
        tmp_path / "run",
        dev_queries=dev,
        dev_qrels={q: qrels[q] for q in dev},
        config=cfg,
        progress=False,
    )
    assert _hashes(path) == before
    assert summary["steps"] == 2 and summary["margin_scale"] > 0
    check = summary["teacher_check"]  # the stand-in teacher puts the judged documents first
    assert check["queries"] == len(dev) and check["teacher_rerank_ndcg@10"] == 1.0
    assert 0.0 < check["student_rerank_ndcg@10"] <= 1.0
    assert [h["step"] for h in summary["history"] if "dev_ndcg@10" in h] == [0, 1, 2]
    model_dir = tmp_path / "run" / "model"
    manifest = json.loads((model_dir / "query_encoder.json").read_text())
    index_manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["document_encoder"]["fingerprint"] == index_manifest["encoder"]["fingerprint"]
    assert manifest["training"]["teacher_check"] == check  # recorded with the model

    retriever = Retriever.load(path, query_encoder=str(model_dir))
    hits = retriever.search(next(iter(dev.values())), k=3)
    assert len(hits) == 3

    # an index of another document encoder (the student's own weights used for documents) refuses it
    other_encoder = tmp_path / "other-encoder"
    shutil.copytree(model_dir, other_encoder)
    (other_encoder / "query_encoder.json").unlink()
    other = DenseIndex(DenseEncoder(str(other_encoder), max_length=128))
    other.add(["a", "b"], ["one text", "another text"])
    other.save(tmp_path / "other-index")
    with pytest.raises(EncoderMismatch, match="query-side encoder"):
        Retriever.load(tmp_path / "other-index", query_encoder=str(model_dir))
    # and the plain base model still loads its own index
    assert Retriever.load(path).search("cancer", k=1)
    _served_hits_equal_in_process(path, model_dir, next(iter(dev.values())))

    # same settings resume (nothing left to do), other settings are refused
    again = train_query_encoder(
        path,
        train,
        teacher,
        tmp_path / "run",
        dev_queries=dev,
        dev_qrels={q: qrels[q] for q in dev},
        config=cfg,
        progress=False,
    )
    assert again["steps"] == 2
    with pytest.raises(FrozenIndexError, match="other settings"):
        train_query_encoder(
            path, train, teacher, tmp_path / "run", config=QuerySideConfig(batch_size=4), progress=False
        )


def test_a_teacher_no_better_than_the_student_is_reported_before_training(small_index, tmp_path):
    path, texts, teacher, qrels = small_index
    worst_first = {q: {d: -s for d, s in scores.items()} for q, scores in teacher.items()}
    train, dev = _train_dev(texts)
    with pytest.warns(UserWarning, match="no better than the base student"):
        summary = train_query_encoder(
            path,
            train,
            worst_first,
            tmp_path / "run",
            dev_queries=dev,
            dev_qrels={q: qrels[q] for q in dev},
            config=QuerySideConfig(batch_size=16, epochs=1, eval_every=1),
            progress=False,
        )
    check = summary["teacher_check"]
    assert check["teacher_rerank_ndcg@10"] < check["student_rerank_ndcg@10"]


def test_query_side_refuses_bad_inputs(small_index, tmp_path):
    path, texts, teacher, qrels = small_index
    with pytest.raises(FrozenIndexError, match="teacher-scored"):
        train_query_encoder(path, texts, {}, tmp_path / "r1", progress=False)
    dev = dict(list(texts.items())[:2])
    with pytest.raises(FrozenIndexError, match="also training queries"):
        train_query_encoder(
            path,
            texts,
            teacher,
            tmp_path / "r2",
            dev_queries=dev,
            dev_qrels={q: qrels[q] for q in dev},
            progress=False,
        )


def _served_hits_equal_in_process(index, model_dir, query):
    """`distilir-index serve --query-encoder` over real HTTP on loopback (the demo's own call)
    serves the student's hits."""
    from distilir_index import Retriever

    from distilir.demo import serve_and_ask

    served = [(h["id"], round(h["score"], 4)) for h in serve_and_ask(index, model_dir, query, timeout=120)]
    local = Retriever.load(index, query_encoder=str(model_dir)).search(query, k=3)
    assert served == [(h.id, round(h.score, 4)) for h in local]


def test_cli_trains_on_synthetic_queries_with_a_synthetic_dev_split(small_index, tmp_path, capsys):
    """A collection used as if it had no judged queries: crop queries, BM25 (a real teacher) over the
    index's documents, selection on held-out crops (`--synthetic-dev`)."""
    from distilir_index.dense import DenseIndex

    from distilir.cli import main
    from distilir.data import load_dataset
    from distilir.queries import QueryStore, as_dataset, build_generator, generate_queries
    from distilir.teachers import build_teacher, teach

    path, _, _, _ = small_index
    ds = load_dataset("scifact")
    in_index = DenseIndex.load(path, load_encoder=False).ids()
    generate_queries(ds, build_generator("crop?per_doc=1"), tmp_path / "q", max_docs=40, progress=False)
    store = QueryStore.open(tmp_path / "q")
    view_ids = store.queries()
    view = as_dataset(ds, view_ids, split="synthetic", qrels=store.pseudo_qrels())
    teacher = build_teacher("bm25", corpus={d: ds.corpus()[d].full_text for d in in_index})
    teach(view, {q: list(in_index) for q in view_ids}, teacher, tmp_path / "t", depth=16, progress=False)
    argv = ["train-query-encoder", "--dataset", "scifact", "--split", "", "--queries", str(tmp_path / "q")]
    argv += ["--index", str(path), "--teacher-store", str(tmp_path / "t"), "--out", str(tmp_path / "o")]
    argv += ["--set", "eval_every=1", "--set", "batch_size=8", "--quiet"]
    assert main([*argv, "--synthetic-dev", "6"]) == 0
    summary = json.loads((tmp_path / "o" / "history.json").read_text())
    assert summary["dev_queries"] == 6 and summary["train_queries"] == len(view_ids) - 6
    assert sum("dev_ndcg@10" in h for h in summary["history"]) == summary["steps"] + 1  # step 0 too
    capsys.readouterr()
    with pytest.raises(SystemExit, match="already gives a dev split"):
        main([*argv[:4], "train", *argv[5:], "--synthetic-dev", "6"])
