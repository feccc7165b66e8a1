"""Distill-VQ (distilir_index.distill_vq): the exported index is a real FAISS IndexIVFPQ that scores
exactly what our decode-and-score computes, training improves held-out recall over FAISS's k-means on
a query distribution FAISS does not see, and the result saves, loads and compacts as a DenseIndex."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from distilir_index.cli import main
from distilir_index.dense import DenseIndex
from distilir_index.distill_vq import (
    DistillVQConfig,
    assign,
    build_ivfpq,
    codebooks_of,
    decode_scores,
    distill_index,
    distill_ivfpq,
    faiss_ivfpq,
    recall_at_k,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int = 32, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rs = np.random.RandomState(seed)
    centers = rs.randn(clusters, d)
    return _unit(centers[rs.randint(clusters, size=n)] + 0.6 * rs.randn(n, d))


def _skewed_queries(n: int, d: int = 32, seed: int = 1) -> np.ndarray:
    """Queries that look along a few directions only (what the corpus-only k-means ignores)."""
    rs = np.random.RandomState(seed)
    basis = np.random.RandomState(99).randn(3, d)
    return _unit(rs.randn(n, 3) @ basis + 0.1 * rs.randn(n, d))


def test_faiss_search_of_the_exported_index_equals_decode_and_score():
    x = _clustered(600)
    queries = _clustered(12, seed=5)
    base = faiss_ivfpq(x, nlist=8, pq_m=4, pq_nbits=5, seed=0)
    centroids, codebooks = codebooks_of(base)
    rs = np.random.RandomState(3)  # move the parameters away from FAISS's own: any values must round-trip
    centroids = centroids + 0.05 * rs.randn(*centroids.shape).astype(np.float32)
    codebooks = codebooks + 0.02 * rs.randn(*codebooks.shape).astype(np.float32)
    index = build_ivfpq(centroids, codebooks, nprobe=8)
    index.add(x)
    assert isinstance(faiss.downcast_index(index), faiss.IndexIVFPQ) and index.ntotal == len(x)

    lists, codes = assign(x, centroids, codebooks)
    ours = decode_scores(queries, lists, codes, centroids, codebooks)
    scores, ids = index.search(queries, 20)
    np.testing.assert_allclose(scores, np.take_along_axis(ours, ids, axis=1), atol=1e-4)
    np.testing.assert_allclose(scores, -np.sort(-ours, axis=1)[:, :20], atol=1e-4)
    # FAISS's own reconstruction of every vector is our decoding
    index.make_direct_map()
    recon = index.reconstruct_n(0, len(x))
    mine = centroids[lists] + np.concatenate([codebooks[j][codes[:, j]] for j in range(4)], axis=1)
    np.testing.assert_allclose(recon, mine, atol=1e-5)


def test_distillation_beats_faiss_kmeans_on_held_out_queries():
    x = _clustered(3000)
    queries = _skewed_queries(900)
    train, dev, test = queries[:600], queries[600:750], queries[750:]
    config = DistillVQConfig(nlist=16, pq_m=4, pq_nbits=4, nprobe=4, epochs=6, lr=3e-3, temperature=0.05)
    result = distill_ivfpq(x, train, dev, config)
    history = result.history
    assert [h["epoch"] for h in history] == list(range(7))
    assert result.chosen_epoch == max(range(7), key=lambda e: (history[e]["dev_recall@10"], -e))
    exact = faiss.IndexFlatIP(32)
    exact.add(x)
    truth = exact.search(test, 10)[1]
    base = faiss_ivfpq(x, nlist=16, pq_m=4, pq_nbits=4, seed=0)
    base.add(x)
    base.nprobe = 4
    distilled = result.index
    distilled.add(x)
    faiss_recall = recall_at_k(base.search(test, 10)[1], truth)
    ours = recall_at_k(distilled.search(test, 10)[1], truth)
    assert ours > faiss_recall + 0.02, (faiss_recall, ours)


def test_with_quantizer_saves_loads_and_compacts_keeping_the_learned_codebooks(tmp_path):
    x = _clustered(800)
    ids = [f"d{i}" for i in range(len(x))]
    flat = DenseIndex(dimension=32)
    flat.add(ids, [f"text {i}" for i in ids], metadata=[{"n": i} for i in range(len(x))], vectors=x)
    result = distill_ivfpq(
        x,
        _skewed_queries(200),
        _skewed_queries(50, seed=2),
        DistillVQConfig(nlist=8, pq_m=4, pq_nbits=4, epochs=2),
    )
    index = flat.with_quantizer(result.index, trained_by=result.describe(), nprobe=8)
    assert len(flat) == len(x) and flat.factory == "Flat"  # the source is untouched
    q = _skewed_queries(5, seed=7)
    raw = result.index
    raw.add(x)
    raw.nprobe = 8
    expect = raw.search(q, 5)[1]
    got = [[h.id for h in hits] for hits in index.search(q, 5)]
    assert got == [[ids[p] for p in row] for row in expect]
    assert index.search(q, 1)[0][0].metadata["n"] == int(expect[0][0])

    index.save(tmp_path / "dvq")
    manifest = json.loads((tmp_path / "dvq" / "manifest.json").read_text())
    assert manifest["settings"]["trained_by"]["method"] == "distill-vq"
    assert manifest["settings"]["factory"] == "IVF8,PQ4x4np"
    loaded = DenseIndex.load(tmp_path / "dvq")
    assert [[h.id for h in hits] for hits in loaded.search(q, 5)] == got

    before = codebooks_of(loaded._faiss_index)
    loaded.delete(["d0", "d1"])
    loaded.compact()
    after = codebooks_of(loaded._faiss_index)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert len(loaded) == len(x) - 2 and loaded.trained_by["method"] == "distill-vq"


def test_with_quantizer_refuses_what_it_cannot_use():
    x = _clustered(400)
    flat = DenseIndex(dimension=32)
    flat.add([str(i) for i in range(len(x))], vectors=x)
    with pytest.raises(TypeError, match="faiss.IndexIVFPQ"):
        flat.with_quantizer(faiss.IndexFlatIP(32))
    l2 = faiss.index_factory(32, "IVF4,PQ4x4np", faiss.METRIC_L2)
    l2.train(x)
    with pytest.raises(ValueError, match="not inner product"):
        flat.with_quantizer(l2)
    full = faiss_ivfpq(x, nlist=4, pq_m=4, pq_nbits=4)
    full.add(x)
    with pytest.raises(ValueError, match="already holds 400 vectors"):
        flat.with_quantizer(full)
    other = faiss_ivfpq(_unit(np.random.RandomState(0).randn(400, 16)), nlist=4, pq_m=4, pq_nbits=4)
    with pytest.raises(ValueError, match="16-d, this index holds 32-d"):
        flat.with_quantizer(other)


def test_distill_index_needs_queries_and_checks_them():
    x = _clustered(400)
    flat = DenseIndex(dimension=32)
    flat.add([str(i) for i in range(len(x))], vectors=x)
    with pytest.raises(ValueError, match="needs queries"):
        distill_index(flat, None, DistillVQConfig(nlist=4, pq_m=4, pq_nbits=4))
    with pytest.raises(ValueError, match="no encoder"):
        distill_index(flat, ["a query"], DistillVQConfig(nlist=4, pq_m=4, pq_nbits=4))
    with pytest.raises(ValueError, match="at least 10"):
        distill_index(flat, _skewed_queries(5), DistillVQConfig(nlist=4, pq_m=4, pq_nbits=4))
    with pytest.raises(ValueError, match="pq_m=5 must divide"):
        distill_ivfpq(x, x[:20], x[20:30], DistillVQConfig(nlist=4, pq_m=5, pq_nbits=4))
    out = distill_index(flat, None, DistillVQConfig(nlist=4, pq_m=4, pq_nbits=4, epochs=1), doc_queries=200)
    assert out.trained_by["queries"] == {"train": 160, "dev": 40, "doc_queries": 200}


def _vector_index(tmp_path):
    x = _clustered(500)
    flat = DenseIndex(dimension=32)
    flat.add([f"d{i}" for i in range(len(x))], vectors=x)
    flat.save(tmp_path / "flat")
    return tmp_path / "flat"


def test_cli_distill_pq_writes_a_loadable_ivfpq_index(tmp_path, capsys):
    src = _vector_index(tmp_path)
    argv = ["distill-pq", "--index", str(src), "--doc-queries", "300", "--out", str(tmp_path / "dvq")]
    argv += ["--nlist", "4", "--pq-m", "4", "--pq-nbits", "4", "--epochs", "2", "--quiet"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["factory"] == "IVF4,PQ4x4np" and line["documents"] == 500
    loaded = DenseIndex.load(tmp_path / "dvq")
    assert loaded.trained_by["chosen_epoch"] == line["chosen_epoch"]
    # a second run into the same folder is refused without --overwrite, accepted with it
    assert main(argv) == 2
    assert "not a new or empty folder" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_cli_distill_pq_bad_input(tmp_path, capsys):
    src = _vector_index(tmp_path)
    with pytest.raises(SystemExit, match="needs --queries FILE and/or --doc-queries N"):
        main(["distill-pq", "--index", str(src), "--out", str(tmp_path / "o")])
    assert (
        main(
            [
                "distill-pq",
                "--index",
                str(src),
                "--queries",
                str(tmp_path / "nope.txt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"text": "ok"}\n{"id": 3}\n')
    assert main(["distill-pq", "--index", str(src), "--queries", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "line 2: expected an object with a 'text' string" in capsys.readouterr().err
    texts = tmp_path / "q.txt"
    texts.write_text("\n".join(f"query {i}" for i in range(20)))
    assert (
        main(["distill-pq", "--index", str(src), "--queries", str(texts), "--out", str(tmp_path / "o")]) == 2
    )
    assert "no encoder to encode query strings" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
