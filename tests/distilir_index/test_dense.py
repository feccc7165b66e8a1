"""DenseIndex on seeded synthetic vectors, checked against exact numpy search; save/load (also under
kill -9); encoder checks with the real all-MiniLM-L6-v2; and one effectiveness run on SciFact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import faiss
import numpy as np
import pytest
from distilir_index.base import ManifestError
from distilir_index.dense import DenseIndex, _ivfpq_shape
from distilir_index.encoders import DenseEncoder, EncoderMismatch


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """The test machine is small and shared: OpenMP spinning on busy cores only slows FAISS down."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def mixture(n: int, d: int, seed: int, clusters: int = 50) -> np.ndarray:
    """Unit vectors from a seeded Gaussian mixture (clustered, like real embeddings)."""
    rs = np.random.RandomState(seed)
    centers = rs.randn(clusters, d)
    x = centers[rs.randint(clusters, size=n)] + 0.6 * rs.randn(n, d)
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


N, D = 4000, 32
XB = mixture(N, D, seed=0)
XQ = mixture(60, D, seed=1)
IDS = [f"doc{i}" for i in range(N)]
META = [{"group": i % 7, "year": 2000 + i % 25} for i in range(N)]


def exact_topk(xq: np.ndarray, xb: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Reference: numpy inner products, full sort (positions, scores)."""
    scores = xq @ xb.T
    if allowed is not None:
        scores[:, np.setdiff1d(np.arange(len(xb)), allowed)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def build(kind: str, **kw) -> DenseIndex:
    if kind == "ivfpq":
        kw.setdefault("pq_m", 16)
    index = DenseIndex(index=kind, store_text=False, **kw)
    index.add(IDS, vectors=XB, metadata=META)
    return index


def positions(hits) -> list[list[int]]:
    return [[int(h.id[3:]) for h in hs] for hs in hits]


def recall(hits, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(p) & set(t)) / len(t) for p, t in zip(positions(hits), truth, strict=True)])
    )


@pytest.fixture(scope="module")
def truth10():
    return exact_topk(XQ, XB, 10)


def test_flat_equals_brute_force(truth10):
    index = build("flat")
    hits = index.search(XQ, k=10)
    order, scores = truth10
    assert positions(hits) == order.tolist()
    np.testing.assert_allclose([[h.score for h in hs] for hs in hits], scores, rtol=1e-5, atol=1e-6)
    assert index.factory == "Flat" and len(index) == N


def test_hnsw_recall_and_ef_search(truth10):
    index = build("hnsw")
    low = recall(index.search(XQ, k=10, ef_search=16), truth10[0])
    high = recall(index.search(XQ, k=10, ef_search=256), truth10[0])
    assert high >= 0.98 and high >= low
    # HNSW scores are exact inner products of the stored float vectors
    hits = index.search(XQ[:5], k=10)
    for q, hs in enumerate(hits):
        np.testing.assert_allclose([h.score for h in hs], XB[[int(h.id[3:]) for h in hs]] @ XQ[q], rtol=1e-5)


def test_ivfpq_trains_on_first_search_and_recall(truth10):
    index = build("ivfpq", pq_m=16)
    assert index.factory is None  # not trained yet: vectors are buffered
    hits = index.search(XQ, k=10, nprobe=16)
    # nlist = min(4 sqrt(n), n / 39) = 102; nbits = floor(log2(4000 / 39)) = 6 for a small corpus
    nlist, m, nbits = _ivfpq_shape(N, D, None, 16, None)
    assert index.factory == f"IVF{nlist},PQ{m}x{nbits}np" == "IVF102,PQ16x6np"
    assert recall(hits, truth10[0]) >= 0.7  # 16-byte codes of 128-byte vectors: approximate
    rescored = index.search(XQ, k=10, nprobe=32, rescore_factor=10)
    assert recall(rescored, truth10[0]) >= 0.95
    assert recall(index.search(XQ, k=10, nprobe=nlist), truth10[0]) >= recall(
        index.search(XQ, k=10, nprobe=1), truth10[0]
    )


def test_sq8_rescoring_recall_and_exact_scores(truth10):
    index = build("sq8")
    hits = index.search(XQ, k=10)
    assert recall(hits, truth10[0]) >= 0.99
    for q, hs in enumerate(hits):
        np.testing.assert_allclose(
            [h.score for h in hs], XB[[int(h.id[3:]) for h in hs]] @ XQ[q], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "sq8"])
def test_filters_return_the_filtered_top_k(kind):
    index = build(kind, exact_filter_threshold=1000)
    meta_group = np.array([m["group"] for m in META])
    meta_year = np.array([m["year"] for m in META])
    cases = [
        ({"group": 3}, np.flatnonzero(meta_group == 3)),  # ~570 docs: below the threshold -> exact
        ({"year": {"$gte": 2005}}, np.flatnonzero(meta_year >= 2005)),  # ~3200 docs: FAISS selector
        ({"group": 1, "year": 2001}, np.flatnonzero((meta_group == 1) & (meta_year == 2001))),  # ~23 docs
    ]
    for spec, allowed in cases:
        hits = index.search(XQ, k=10, filters=spec)
        order, _ = exact_topk(XQ, XB, 10, allowed)
        assert all(len(hs) == min(10, len(allowed)) for hs in hits)
        assert all(set(p) <= set(allowed.tolist()) for p in positions(hits))
        if kind == "flat" or len(allowed) <= 1000:
            assert positions(hits) == order.tolist()  # exact
        else:
            assert recall(hits, order) >= (0.5 if kind == "ivfpq" else 0.9)
    few = ["doc5", "doc17", "doc40", "nope"]
    hits = index.search(XQ[:3], k=10, ids=few)
    assert all(sorted(h.id for h in hs) == ["doc17", "doc40", "doc5"] for hs in hits)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "sq8"])
def test_add_delete_compact(kind, truth10):
    index = build(kind)
    index.search(XQ[:1], k=1)  # trains ivfpq before the changes below
    gone = sorted({int(p) for p in truth10[0][:, :3].ravel()})  # the best hits of every query
    assert index.delete([f"doc{p}" for p in gone] + ["never-added"]) == len(gone)
    extra = mixture(200, D, seed=5)
    index.add([f"new{i}" for i in range(200)], vectors=extra)
    assert len(index) == N - len(gone) + 200
    allx = np.concatenate([XB, extra])
    live = np.setdiff1d(np.arange(len(allx)), gone)
    order, _ = exact_topk(XQ, allx, 10, live)
    names = np.array(IDS + [f"new{i}" for i in range(200)])
    for _ in range(2):  # before and after compact()
        hits = index.search(XQ, k=10, rescore_factor=10 if kind == "ivfpq" else None)
        got = [[h.id for h in hs] for hs in hits]
        assert all(len(g) == 10 for g in got)
        assert not {f"doc{p}" for p in gone} & {i for g in got for i in g}  # deleted never returned
        rec = np.mean([len(set(g) & set(names[o])) / 10 for g, o in zip(got, order, strict=True)])
        assert rec == 1.0 if kind == "flat" else rec >= 0.9
        index.compact()
    assert index._docs.n_positions == len(index)  # compact dropped the tombstones


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "sq8"])
def test_save_load_roundtrip(kind, tmp_path):
    index = build(kind)
    index.delete(["doc1", "doc2"])
    before = index.search(XQ, k=10, filters={"group": {"$in": [1, 2, 3, 4]}})
    index.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["kind"] == "dense" and manifest["corpus"]["count"] == N - 2
    assert manifest["settings"]["factory"] == index.factory and manifest["encoder"] is None
    for mmap in (False, True):
        loaded = DenseIndex.load(tmp_path / "ix", mmap=mmap)
        after = loaded.search(XQ, k=10, filters={"group": {"$in": [1, 2, 3, 4]}})
        assert [[(h.id, h.score, dict(h.metadata)) for h in hs] for hs in after] == [
            [(h.id, h.score, dict(h.metadata)) for h in hs] for hs in before
        ]
    # a memory-mapped index copies itself into memory on its first write, then saves normally
    loaded.delete(["doc3"])
    loaded.add(["fresh"], vectors=XQ[:1])
    assert loaded.search(XQ[:1], k=1)[0][0].id == "fresh"
    loaded.save(tmp_path / "ix")
    again = DenseIndex.load(tmp_path / "ix")
    assert again.search(XQ[:1], k=1)[0][0].id == "fresh" and "doc3" not in {
        h.id for h in again.search(XQ, k=50)[0]
    }


def test_errors(tmp_path):
    index = build("flat")
    with pytest.raises(ValueError, match="2-D"):
        index.search(XQ[0], k=1)
    with pytest.raises(ValueError, match="dimension 16"):
        index.search(np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="no encoder"):
        index.search(["text query"])
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        index.add(["x", "y"], vectors=XQ[:1])
    with pytest.raises(ValueError, match="NaN"):
        index.add(["x"], vectors=np.full((1, D), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="FAISS cannot build"):
        DenseIndex(index="NotAnIndex", dimension=8)
    with pytest.raises(ValueError, match="ef_search"):
        DenseIndex(ef_search=0)
    from distilir_index.bm25 import BM25Index

    bm25 = BM25Index()
    bm25.add(["a"], ["text"])
    bm25.save(tmp_path / "bm25")
    with pytest.raises(ManifestError, match="'bm25' index, not a 'dense'"):
        DenseIndex.load(tmp_path / "bm25")
    assert DenseIndex().search(np.zeros((2, 4), dtype=np.float32)) == [[], []]


# --- encoders: building from text, and refusing a mismatching query encoder -----------------------

TEXTS = {
    "a": "Aspirin lowers the risk of a second heart attack.",
    "b": "Statins reduce LDL cholesterol in adults.",
    "c": "BM25 ranks documents with term frequencies and document lengths.",
    "d": "Dense retrieval encodes queries and passages into vectors.",
}


def test_encoder_roundtrip_and_mismatch(minilm, tmp_path):
    index = DenseIndex(DenseEncoder(minilm, normalize=True))
    index.add(list(TEXTS), list(TEXTS.values()), metadata=[{"topic": t} for t in "mmir"])
    hits = index.search(["which drug prevents heart attacks?", "vector search"], k=2)
    assert hits[0][0].id == "a" and hits[1][0].id == "d" and hits[0][0].text == TEXTS["a"]
    index.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["encoder"]["dimension"] == 384 and manifest["encoder"]["normalize"] is True

    rebuilt = DenseIndex.load(tmp_path / "ix")  # encoder rebuilt from the manifest
    again = rebuilt.search(["which drug prevents heart attacks?", "vector search"], k=2)
    assert [[h.id for h in hs] for hs in again] == [[h.id for h in hs] for hs in hits]
    np.testing.assert_allclose([h.score for h in again[0]], [h.score for h in hits[0]], rtol=1e-5)
    same = DenseIndex.load(tmp_path / "ix", encoder=DenseEncoder(minilm, normalize=True))
    assert same.search(["vector search"], k=1)[0][0].id == "d"

    with pytest.raises(EncoderMismatch, match="normalize"):
        DenseIndex.load(tmp_path / "ix", encoder=DenseEncoder(minilm, normalize=False))
    with pytest.raises(EncoderMismatch, match="query_prompt"):
        DenseIndex.load(tmp_path / "ix", encoder=DenseEncoder(minilm, query_prompt="query: "))

    small = DenseIndex()
    small.add(["x"], vectors=np.ones((1, 32), dtype=np.float32))
    small.save(tmp_path / "small")
    with pytest.raises(EncoderMismatch, match="32-d"):
        DenseIndex.load(tmp_path / "small", encoder=DenseEncoder(minilm))


# --- kill -9 in the middle of save() ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import distilir_index.base as base
    from distilir_index.dense import DenseIndex

    path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rs = np.random.RandomState(123)
    x = rs.randn(n, 32).astype(np.float32)
    index = DenseIndex(index="sq8", store_text=True)
    index.add([f"new{i}" for i in range(n)], [f"text {i} " * 10 for i in range(n)], vectors=x,
              metadata=[{"i": i} for i in range(n)])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_commit, real_replace = base.ArtifactDir.write, base.ArtifactDir.commit, os.replace
    calls = []
    def write(self, role, name, writer):
        calls.append(role)
        if mode == "mid-file" and len(calls) == 2:
            def half(tmp):  # the second data file is half written when the process dies
                with open(tmp, "wb") as f:
                    f.write(b"\\x00" * 1000)
                die()
            return real_write(self, role, name, half)
        out = real_write(self, role, name, writer)
        if mode == "between-files" and len(calls) == 2:
            die()
        return out
    def commit(self, **kw):
        if mode == "before-commit":
            die()
        return real_commit(self, **kw)
    def replace(src, dst):
        if mode == "manifest-partial" and str(dst).endswith("manifest.json"):
            die()
        return real_replace(src, dst)
    base.ArtifactDir.write, base.ArtifactDir.commit, base.os.replace = write, commit, replace
    print("saving", flush=True)  # mode "external": no hook, the parent kills us while we save
    index.save(path)
    print("saved", flush=True)
    """
)


def run_child(path, mode: str, n: int, kill_after: float | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    if kill_after is not None:
        assert proc.stdout.readline().strip() == b"saving"
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    return proc.returncode


@pytest.mark.parametrize("mode", ["mid-file", "between-files", "before-commit", "manifest-partial"])
def test_kill_9_during_save_keeps_the_old_index(mode, tmp_path):
    old = DenseIndex(index="sq8")
    old.add(IDS[:500], vectors=XB[:500], metadata=META[:500])
    old.save(tmp_path / "ix")
    expected = old.search(XQ[:5], k=5)

    rc = run_child(tmp_path / "ix", mode, n=20_000)
    assert rc == -signal.SIGKILL  # the child really died by SIGKILL in the middle of save()
    leftovers = {p.name for p in (tmp_path / "ix").iterdir()}
    assert any(".g2" in name for name in leftovers)  # the new generation had started to be written

    loaded = DenseIndex.load(tmp_path / "ix")
    got = loaded.search(XQ[:5], k=5)
    assert [[(h.id, h.score) for h in hs] for hs in got] == [[(h.id, h.score) for h in hs] for hs in expected]
    assert len(loaded) == 500

    loaded.save(tmp_path / "ix")  # the next save sweeps what the dead one left behind
    names = {p.name for p in (tmp_path / "ix").iterdir()}
    assert not [n for n in names if n.endswith(".partial")]
    assert json.loads((tmp_path / "ix" / "manifest.json").read_text())["generation"] == 2


def test_kill_9_from_outside_at_an_arbitrary_moment(tmp_path):
    """SIGKILL sent by this process while the child is inside save(): the directory must load as the
    old index, or as the complete new one if the kill came after the commit."""
    old = DenseIndex(index="sq8")
    old.add(IDS[:500], vectors=XB[:500])
    old.save(tmp_path / "ix")
    rc = run_child(tmp_path / "ix", "external-save", n=100_000, kill_after=0.4)
    loaded = DenseIndex.load(tmp_path / "ix")
    if len(loaded) == 500:
        assert [h.id for h in loaded.search(XQ[:1], k=3)[0]] == [h.id for h in old.search(XQ[:1], k=3)[0]]
    else:
        assert rc == 0 or len(loaded) == 100_000
        assert loaded.search(XQ[:1], k=1)[0][0].id.startswith("new")


# --- effectiveness with a real model ---------------------------------------------------------------


@pytest.mark.slow
def test_minilm_flat_scifact_ndcg(minilm, data_dir):
    """all-MiniLM-L6-v2, exact search, SciFact test: nDCG@10 = 0.645 (SBERT/MTEB); encodes 5,183
    abstracts (~70-100 s on 2 cores)."""
    import gzip

    import ir_measures

    folder = data_dir / "scifact"
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    with gzip.open(folder / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    index = DenseIndex(DenseEncoder(minilm, batch_size=32), store_text=False)
    index.add([d["_id"] for d in corpus], [f"{d.get('title', '')} {d['text']}".strip() for d in corpus])
    qids = sorted(qrels)
    hits = index.search([queries[q] for q in qids], k=100)
    run = {q: {h.id: h.score for h in hs} for q, hs in zip(qids, hits, strict=True)}
    per_query = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, run)}
    ndcg = sum(per_query.get(q, 0.0) for q in qids) / len(qids)
    print(f"all-MiniLM-L6-v2 flat scifact nDCG@10 = {ndcg:.4f}")
    assert ndcg == pytest.approx(0.645, abs=0.01)
