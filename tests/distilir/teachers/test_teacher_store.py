"""The teacher score store: dedup, refusal of foreign teachers and bad ids, crash recovery, exports.

Uses the FAKE hash-based teacher of conftest.py (a test double, not a model): the store's bookkeeping
is under test here, not the teacher's numbers."""

from __future__ import annotations

import json
import shutil
from hashlib import sha256
from pathlib import Path

import ir_measures
import numpy as np
import pyarrow.parquet as pq
import pytest

from distilir.teachers.base import text_hash
from distilir.teachers.store import FORMAT, StoreError, TeacherStore


def dir_digest(path: Path) -> str:
    """sha256 over every file name and content under ``path`` (to prove nothing was touched)."""
    h = sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def expected_run(teacher_cls, queries, docs, candidates, salt=""):
    return {q: {d: teacher_cls.value(queries[q], docs[d], salt) for d in ds} for q, ds in candidates.items()}


def test_scores_every_pair_once_and_reads_back(tmp_path, fake_teacher_cls, small_lists, capsys):
    queries, docs, candidates, _ = small_lists
    teacher = fake_teacher_cls()
    with TeacherStore.open(
        tmp_path / "s", teacher, candidate_source={"retriever": "fixed", "depth": 12}
    ) as store:
        stats = store.score(teacher, queries, docs, candidates, batch_queries=6, progress=True)
        n_pairs = sum(len(v) for v in candidates.values())
        assert f"{n_pairs}/{n_pairs}" in capsys.readouterr().err  # the progress bar counts pairs
        assert stats == {"scored": n_pairs, "skipped": 0, "shards": 4}  # ceil(20 / 6)
        assert len(store) == n_pairs == len(teacher.scored) == len(set(teacher.scored))
        assert store.to_run() == expected_run(fake_teacher_cls, queries, docs, candidates)
        q0 = next(iter(candidates))
        assert list(store.get(q0)) == candidates[q0]  # candidate order
        assert sorted(store.pairs()) == sorted(
            (q, d, s)
            for q, row in expected_run(fake_teacher_cls, queries, docs, candidates).items()
            for d, s in row.items()
        )
        # a second call scores nothing; a longer list scores only the new pair
        assert store.score(teacher, queries, docs, candidates, progress=False)["scored"] == 0
        assert len(teacher.scored) == n_pairs
        extra_doc = next(d for d in docs if d not in candidates[q0])
        more = {q0: candidates[q0] + [extra_doc]}
        assert store.score(teacher, queries, docs, more, progress=False) == {
            "scored": 1,
            "skipped": 12,
            "shards": 1,
        }
        assert teacher.scored[-1] == (queries[q0], docs[extra_doc])
        assert store.get(q0)[extra_doc] == fake_teacher_cls.value(queries[q0], docs[extra_doc])

    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"] == FORMAT
    assert manifest["teacher"]["fingerprint"] == teacher.fingerprint
    assert manifest["teacher"]["config"] == teacher.get_config_dict()
    assert manifest["score_type"] == "logit"
    assert manifest["candidates"] == [{"retriever": "fixed", "depth": 12}]
    assert manifest["counts"] == {"queries": 20, "pairs": n_pairs + 1, "shards": 5}
    assert [s["file"] for s in manifest["shards"]] == [f"shard-{i:05d}.parquet" for i in range(5)]

    # shards are plain Parquet with the documented schema, readable without distilir
    table = pq.read_table(tmp_path / "s" / "shard-00000.parquet")
    assert table.schema.names == ["qid", "qhash", "docid", "dhash", "score", "rank"]
    assert (
        str(table.schema.field("score").type) == "double" and str(table.schema.field("rank").type) == "int32"
    )
    assert table.schema.metadata[b"distilir.teacher_fingerprint"].decode() == teacher.fingerprint
    row = table.slice(0, 1).to_pylist()[0]
    assert (
        row["qhash"]
        == text_hash(queries[row["qid"]])
        == sha256(queries[row["qid"]].encode()).hexdigest()[:16]
    )
    assert row["dhash"] == text_hash(docs[row["docid"]])
    assert row["rank"] == candidates[row["qid"]].index(row["docid"]) + 1

    # read-only reopen sees the same; scoring through it is refused
    ro = TeacherStore.open(tmp_path / "s")
    assert ro.to_run() == store.to_run() and len(ro) == n_pairs + 1
    with pytest.raises(StoreError, match="read-only"):
        ro.score(teacher, queries, docs, candidates)
    ro.verify()


def test_other_teacher_is_refused_and_nothing_is_touched(tmp_path, fake_teacher_cls, small_lists):
    queries, docs, candidates, _ = small_lists
    with TeacherStore.open(tmp_path / "s", fake_teacher_cls()) as store:
        store.score(fake_teacher_cls(), queries, docs, candidates, progress=False)
    before = dir_digest(tmp_path / "s")
    other = fake_teacher_cls(salt="another prompt")
    with pytest.raises(StoreError, match="fingerprint") as err:
        TeacherStore.open(tmp_path / "s", other)
    assert "another directory" in str(err.value)
    assert dir_digest(tmp_path / "s") == before
    # scoring with a different teacher through a store opened for the first one is refused too
    with (
        TeacherStore.open(tmp_path / "s", fake_teacher_cls()) as store,
        pytest.raises(StoreError, match="fingerprint"),
    ):
        store.score(other, queries, docs, candidates)
    assert dir_digest(tmp_path / "s") == before
    # a non-empty directory that is no store is refused
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(StoreError, match="not a teacher score store"):
        TeacherStore.open(tmp_path / "junk", other)


def test_unknown_ids_fail_before_scoring_and_lose_nothing(tmp_path, fake_teacher_cls, small_lists):
    queries, docs, candidates, _ = small_lists
    teacher = fake_teacher_cls()
    store = TeacherStore.open(tmp_path / "s", teacher)
    first = dict(list(candidates.items())[:5])
    store.score(teacher, queries, docs, first, progress=False)
    before, n_before, calls = dir_digest(tmp_path / "s"), len(store), teacher.calls

    bad = dict(candidates)
    bad["no-such-query"] = [next(iter(docs))]
    bad[next(iter(candidates))] = candidates[next(iter(candidates))] + ["no-such-doc"]
    with pytest.raises(StoreError) as err:
        store.score(teacher, queries, docs, bad, progress=False)
    msg = str(err.value)
    assert "no-such-query" in msg and "no-such-doc" in msg and "unchanged" in msg
    assert teacher.calls == calls and len(store) == n_before
    assert dir_digest(tmp_path / "s") == before

    # a stored query id whose text changed is refused as well (keys include the text hash)
    changed = dict(queries)
    q0 = next(iter(first))
    changed[q0] = queries[q0] + " (edited)"
    with pytest.raises(StoreError, match="different text"):
        store.score(teacher, changed, docs, candidates, progress=False)
    assert teacher.calls == calls and dir_digest(tmp_path / "s") == before
    # and a teacher returning NaN is refused without storing its batch
    nan_teacher = fake_teacher_cls(fail_on_call=1)
    with pytest.raises(StoreError, match="NaN"):
        store.score(nan_teacher, queries, docs, candidates, progress=False)
    assert len(store) == n_before and dir_digest(tmp_path / "s") == before
    store.close()


def test_second_writer_is_locked_out(tmp_path, fake_teacher_cls):
    store = TeacherStore.open(tmp_path / "s", fake_teacher_cls())
    with pytest.raises(StoreError, match="writing"):
        TeacherStore.open(tmp_path / "s", fake_teacher_cls())
    TeacherStore.open(tmp_path / "s")  # readers are welcome
    store.close()
    TeacherStore.open(tmp_path / "s", fake_teacher_cls()).close()


def test_shard_without_manifest_entry_is_adopted_and_partials_removed(
    tmp_path, fake_teacher_cls, small_lists
):
    """Simulate a kill between the shard's rename and the manifest's: the shard is complete, the
    manifest does not list it. Reopening adopts it; the resumed run does not score it again."""
    queries, docs, candidates, _ = small_lists
    teacher = fake_teacher_cls()
    path = tmp_path / "s"
    with TeacherStore.open(path, teacher) as store:
        first = dict(list(candidates.items())[:10])
        store.score(teacher, queries, docs, first, batch_queries=5, progress=False)
        old_manifest = (path / "manifest.json").read_text()
        store.score(
            teacher, queries, docs, dict(list(candidates.items())[10:15]), batch_queries=5, progress=False
        )
    (path / "manifest.json").write_text(old_manifest)  # the last manifest update "never happened"
    (path / ".shard-00003.parquet.999.partial").write_bytes(b"half a shard")  # a batch in flight
    assert len(TeacherStore.open(path)) == sum(
        len(candidates[q]) for q in list(candidates)[:15]
    )  # reader sees it

    resumed = fake_teacher_cls()
    with TeacherStore.open(path, resumed) as store:
        assert not (path / ".shard-00003.parquet.999.partial").exists()
        manifest = json.loads((path / "manifest.json").read_text())
        assert [s["file"] for s in manifest["shards"]] == [
            "shard-00000.parquet",
            "shard-00001.parquet",
            "shard-00002.parquet",
        ]
        store.score(resumed, queries, docs, candidates, batch_queries=5, progress=False)
    scored_again = {(q, d) for q, d in resumed.scored}
    done_before = {(queries[q], docs[d]) for q in list(candidates)[:15] for d in candidates[q]}
    assert not scored_again & done_before
    assert TeacherStore.open(path).to_run() == expected_run(fake_teacher_cls, queries, docs, candidates)


def test_foreign_orphan_shard_is_refused(tmp_path, fake_teacher_cls, small_lists):
    queries, docs, candidates, _ = small_lists
    a, b = tmp_path / "a", tmp_path / "b"
    with TeacherStore.open(a, fake_teacher_cls()) as store:
        store.score(fake_teacher_cls(), queries, docs, candidates, progress=False)
    with TeacherStore.open(b, fake_teacher_cls(salt="x")):
        pass
    shutil.copy(a / "shard-00000.parquet", b / "shard-00000.parquet")
    with pytest.raises(StoreError, match="not written for this teacher"):
        TeacherStore.open(b)


def test_keyboard_interrupt_leaves_a_consistent_store(tmp_path, fake_teacher_cls, small_lists):
    queries, docs, candidates, _ = small_lists
    teacher = fake_teacher_cls(interrupt_on_call=3)
    path = tmp_path / "s"
    store = TeacherStore.open(path, teacher)
    with pytest.raises(KeyboardInterrupt):
        store.score(teacher, queries, docs, candidates, batch_queries=4, progress=False)
    committed = sum(len(candidates[q]) for q in list(candidates)[:8])  # two batches of 4 queries landed
    assert len(store) == committed
    store.close()
    assert len(TeacherStore.open(path)) == committed
    again = fake_teacher_cls()
    with TeacherStore.open(path, again) as store:
        assert (
            store.score(again, queries, docs, candidates, batch_queries=4, progress=False)["skipped"]
            == committed
        )
        assert store.to_run() == expected_run(fake_teacher_cls, queries, docs, candidates)


def test_exports_round_trip(tmp_path, fake_teacher_cls, small_lists):
    queries, docs, candidates, qrels = small_lists
    teacher = fake_teacher_cls()
    store = TeacherStore.open(tmp_path / "s", teacher)
    store.score(teacher, queries, docs, candidates, progress=False)
    run = expected_run(fake_teacher_cls, queries, docs, candidates)

    lists = list(store.iter_lists(queries, docs, candidates))
    assert [x["qid"] for x in lists] == list(candidates)
    for x in lists:
        assert x["doc_ids"] == candidates[x["qid"]] and x["query"] == queries[x["qid"]]
        assert x["docs"] == [docs[d] for d in x["doc_ids"]]
        assert x["scores"] == [run[x["qid"]][d] for d in x["doc_ids"]]
    assert [x["doc_ids"] for x in store.iter_lists(queries, docs)] == [x["doc_ids"] for x in lists]
    with pytest.raises(StoreError, match="no stored score"):
        list(store.iter_lists(queries, docs, {lists[0]["qid"]: ["never-scored"]}))

    # sentence-transformers: query, positive, negative_1.., scores = [T(q,pos), T(q,neg_1), ...]
    ds = store.to_sentence_transformers(queries, docs, candidates, n_docs=4)
    assert ds.column_names == ["query", "positive", "negative_1", "negative_2", "negative_3", "scores"]
    assert len(ds) == 20
    row, q0 = ds[0], lists[0]["qid"]
    top = max(candidates[q0], key=lambda d: run[q0][d])
    assert row["positive"] == docs[top]
    negs = [d for d in candidates[q0] if d != top][:3]
    assert [row[f"negative_{j}"] for j in (1, 2, 3)] == [docs[d] for d in negs]
    assert np.allclose(row["scores"], [run[q0][top]] + [run[q0][d] for d in negs])
    with_qrels = store.to_sentence_transformers(queries, docs, candidates, n_docs=3, qrels=qrels)
    rel0 = max(
        (d for d in candidates[q0] if qrels[q0].get(d, 0) > 0), key=lambda d: (qrels[q0][d], run[q0][d])
    )
    assert with_qrels[0]["positive"] == docs[rel0]

    # FlagEmbedding JSONL: positives from qrels, else the teacher's top document
    out = store.to_flag_embedding_jsonl(tmp_path / "fe.jsonl", queries, docs, candidates, qrels=qrels)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 20
    r0 = records[0]
    assert set(r0) == {"query", "pos", "neg", "pos_scores", "neg_scores"}
    rel = [d for d in candidates[q0] if qrels[q0].get(d, 0) > 0]
    assert sorted(r0["pos"]) == sorted(docs[d] for d in rel)
    assert len(r0["neg"]) == len(candidates[q0]) - len(rel) == len(r0["neg_scores"])
    assert r0["neg_scores"] == [run[q0][d] for d in candidates[q0] if d not in rel]
    plain = store.to_flag_embedding_jsonl(tmp_path / "fe2.jsonl", queries, docs, candidates, n_negatives=2)
    p0 = json.loads(plain.read_text().splitlines()[0])
    assert p0["pos"] == [docs[top]] and p0["pos_scores"] == [run[q0][top]] and len(p0["neg"]) == 2

    # TREC run: read back with ir_measures' reader, equal to the store's run; ranks by score
    trec = store.to_trec_run(tmp_path / "run.trec", tag="fake")
    back: dict[str, dict[str, float]] = {}
    for sd in ir_measures.read_trec_run(str(trec)):
        back.setdefault(sd.query_id, {})[sd.doc_id] = sd.score
    assert back.keys() == run.keys()
    for q in run:
        assert back[q] == pytest.approx(run[q], abs=0)
    first_line = trec.read_text().splitlines()[0].split()
    assert first_line[1] == "Q0" and first_line[3] == "1" and first_line[5] == "fake"
    assert first_line[2] == max(run[first_line[0]], key=run[first_line[0]].get)
    store.close()
