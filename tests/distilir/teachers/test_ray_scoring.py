"""Teacher scoring on a local Ray cluster (2 CPUs) against the single-process store: 20 SciFact test
queries x their 10 BM25 candidates, scored by the real BM25 teacher (``bm25`` spec, built inside each
actor from the corpus)."""

from __future__ import annotations

import sys

import pytest

ray = pytest.importorskip("ray", reason="teacher scoring on Ray needs pip install 'distilir[ray]'")

from distilir.teachers import TeacherStore, build_teacher  # noqa: E402
from distilir.teachers.ray_scoring import RayScoringError, score_with_ray  # noqa: E402

SPEC = "bm25?k1=0.9&b=0.4"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def collection(data_dir, tmp_path_factory):
    from distilir.candidates import FirstStageConfig, retrieve
    from distilir.data import load_dataset

    ds = load_dataset("scifact", data_dir=data_dir)
    queries = {q: x.text for q, x in ds.queries("test").items()}
    wanted = sorted(queries)[:20]
    run = retrieve(ds, "test", FirstStageConfig(retriever="bm25"), k=10, queries=wanted,
                   cache_dir=tmp_path_factory.mktemp("index"))  # fmt: skip
    candidates = {q: sorted(docs, key=lambda d: (-docs[d], d)) for q, docs in run.items()}
    docs = {d: x.full_text for d, x in ds.corpus().items()}
    return queries, docs, candidates


@pytest.fixture(scope="module")
def single(collection, tmp_path_factory):
    """The reference: the same pairs scored in this process by TeacherStore.score."""
    queries, docs, candidates = collection
    path = tmp_path_factory.mktemp("single") / "store"
    teacher = build_teacher(SPEC, corpus=docs)
    with TeacherStore.open(path, teacher) as store:
        stats = store.score(teacher, queries, docs, candidates, batch_queries=4, progress=False)
    assert stats["scored"] == sum(len(set(v)) for v in candidates.values()) == 200
    return TeacherStore.open(path)


def _assert_same_store(got: TeacherStore, ref: TeacherStore) -> None:
    assert got.fingerprint == ref.fingerprint
    assert got.manifest["teacher"] == ref.manifest["teacher"]
    ref_run, got_run = ref.to_run(), got.to_run()
    assert got_run.keys() == ref_run.keys()
    for qid, scores in ref_run.items():
        assert list(got_run[qid]) == list(scores)  # same documents, same candidate order (rank)
        assert got_run[qid] == pytest.approx(scores, abs=1e-6)

    def rows(store: TeacherStore) -> list[tuple]:
        table = store.to_table()
        return sorted(
            zip(*[table.column(c).to_pylist() for c in ("qid", "docid", "rank", "qhash")], strict=True)
        )

    assert rows(got) == rows(ref)
    got.verify()


def test_ray_store_equals_the_single_process_store(cluster, collection, single, tmp_path):
    queries, docs, candidates = collection
    path = tmp_path / "ray"
    stats = score_with_ray(path, SPEC, queries, docs, candidates, corpus=docs, workers=2, batch_queries=4,
                           candidate_source={"retriever": "bm25", "depth": 10}, progress=False)  # fmt: skip
    assert stats["scored"] == 200 and stats["skipped"] == 0 and stats["workers"] == 2
    assert stats["shards"] == 5  # 20 queries / 4 per batch: one shard per batch
    store = TeacherStore.open(path)
    _assert_same_store(store, single)
    assert store.manifest["candidates"] == [{"retriever": "bm25", "depth": 10}]
    assert store.manifest["counts"] == {"queries": 20, "pairs": 200, "shards": 5}

    again = score_with_ray(path, SPEC, queries, docs, candidates, corpus=docs, workers=2, progress=False)
    assert again["scored"] == 0 and again["skipped"] == 200 and again["shards"] == 0
    assert TeacherStore.open(path).manifest["counts"]["shards"] == 5


def test_ray_run_on_a_partial_store_scores_only_the_rest(cluster, collection, single, tmp_path):
    """As after a killed run: 8 queries already committed (by a single-process run of the same
    teacher), then the Ray run must score the 120 other pairs and end equal to the reference."""
    queries, docs, candidates = collection
    path = tmp_path / "partial"
    first = dict(list(candidates.items())[:8])
    teacher = build_teacher(SPEC, corpus=docs)
    with TeacherStore.open(path, teacher) as store:
        store.score(teacher, queries, docs, first, batch_queries=8, progress=False)
    stats = score_with_ray(path, SPEC, queries, docs, candidates, corpus=docs, workers=2, batch_queries=4,
                           progress=False)  # fmt: skip
    assert stats["skipped"] == 80 and stats["scored"] == 120 and stats["shards"] == 3
    _assert_same_store(TeacherStore.open(path), single)


def test_ray_refuses_a_store_of_another_teacher(cluster, collection, single, tmp_path):
    queries, docs, candidates = collection
    from distilir.teachers.store import StoreError

    with pytest.raises(StoreError, match="fingerprint"):
        score_with_ray(single.path, "bm25?k1=1.2&b=0.75", queries, docs, candidates, corpus=docs, workers=1,
                       progress=False)  # fmt: skip
    with pytest.raises(RayScoringError, match="workers must be a positive"):
        score_with_ray(tmp_path / "x", SPEC, queries, docs, candidates, corpus=docs, workers=0)
    assert not (tmp_path / "x").exists()


def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    with pytest.raises(ImportError, match=r"pip install 'distilir\[ray\]'"):
        score_with_ray(tmp_path / "s", SPEC, {}, {}, {})
