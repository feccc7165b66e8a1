"""Kill-safety of the teacher score store with a real SIGKILL.

A child process scores 300 pairs (30 queries x 10 docs, batches of 3 queries = 30 pairs) with a FAKE
teacher (a test double: a deterministic hash score, a sleep of a few ms per pair, and one log line per
scored pair). We SIGKILL it mid-run, restart it to completion, and compare with an uninterrupted run.

"Scored twice" is defined precisely: a pair present in a committed shard of run 1 (any complete
``shard-*.parquet`` on disk after the kill, listed in the manifest or not) and scored again in run 2.
It must never happen; and run 1 may lose at most the batch in flight (pairs it logged but did not
commit), which is also the only overlap allowed between the two logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq

from distilir.teachers.store import TeacherStore

N_QUERIES, N_DOCS, BATCH_QUERIES = 30, 10, 3
BATCH_PAIRS = BATCH_QUERIES * N_DOCS

SCRIPT = (
    textwrap.dedent(
        '''
    import sys, time
    from hashlib import sha256
    from distilir.teachers.base import BaseTeacher
    from distilir.teachers.store import TeacherStore

    class SlowLoggingFakeTeacher(BaseTeacher):
        """FAKE teacher (test double): hash score, a few ms per pair, logs every pair it scores."""
        name = "slow-logging-fake"
        score_type = "logit"

        def __init__(self, log_path):
            self.log = open(log_path, "a", buffering=1)

        def score_many(self, queries, docs):
            out = []
            for q, ds in zip(queries, docs):
                row = []
                for d in ds:
                    time.sleep(0.003)
                    h = int.from_bytes(sha256(f"{q}|{d}".encode()).digest()[:8], "big")
                    row.append(h / 2**64 * 10 - 5)
                    self.log.write(f"{q}\\t{d}\\n")
                out.append(row)
            return out

        def get_config_dict(self):
            return {"kind": "slow-logging-fake", "score_type": "logit"}

    store_dir, log_path = sys.argv[1], sys.argv[2]
    queries = {f"q{i}": f"query {i}" for i in range(NQ)}
    docs = {f"d{j}": f"document {j}" for j in range(NQ * ND)}
    candidates = {f"q{i}": [f"d{(i * 7 + k) % (NQ * ND)}" for k in range(ND)] for i in range(NQ)}
    teacher = SlowLoggingFakeTeacher(log_path)
    with TeacherStore.open(store_dir, teacher, candidate_source={"kind": "synthetic"}) as store:
        store.score(teacher, queries, docs, candidates, batch_queries=BQ, progress=False)
    print("done", flush=True)
    '''
    )
    .replace("NQ", str(N_QUERIES))
    .replace("ND", str(N_DOCS))
    .replace("BQ", str(BATCH_QUERIES))
)


def run_child(script: Path, store: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(store), str(log)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def logged(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line.count("\t") == 1]  # type: ignore[misc]


def shard_pairs(store: Path) -> set[tuple[str, str]]:
    """Pairs (as the texts the teacher saw) in every complete shard file on disk."""
    out = set()
    for f in sorted(store.glob("shard-*.parquet")):
        t = pq.read_table(f, columns=["qid", "docid"]).to_pydict()
        out |= {(f"query {q[1:]}", f"document {d[1:]}") for q, d in zip(t["qid"], t["docid"], strict=True)}
    return out


def committed_shards(store: Path) -> int:
    try:
        return len(json.loads((store / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_mid_run_then_resume_scores_nothing_twice(tmp_path):
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)

    # the reference: one uninterrupted run
    ref = run_child(script, tmp_path / "ref", tmp_path / "ref.log")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    ref_store = TeacherStore.open(tmp_path / "ref")
    assert len(ref_store) == N_QUERIES * N_DOCS

    # run 1: SIGKILL once at least 3 batches are committed (well before the 10th)
    store = tmp_path / "store"
    child = run_child(script, store, tmp_path / "run1.log")
    deadline = time.monotonic() + 120
    while committed_shards(store) < 3:
        assert child.poll() is None, f"child ended before it could be killed: {child.stderr.read()}"
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.01)
    time.sleep(0.05)  # land somewhere inside a batch
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    run1 = logged(tmp_path / "run1.log")
    committed1 = shard_pairs(store)
    assert 0 < len(committed1) < N_QUERIES * N_DOCS, "the kill must land mid-run"
    assert committed1 <= set(run1)
    in_flight = set(run1) - committed1
    assert len(in_flight) <= BATCH_PAIRS, "more than the batch in flight was lost"

    # run 2: restart to completion
    child = run_child(script, store, tmp_path / "run2.log")
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    run2 = logged(tmp_path / "run2.log")

    scored_twice = committed1 & set(run2)
    assert scored_twice == set(), f"{len(scored_twice)} committed pairs were scored again"
    assert set(run1) & set(run2) <= in_flight
    assert len(run2) == len(set(run2))  # no pair scored twice within run 2 either
    assert committed1 | set(run2) == set(logged(tmp_path / "ref.log"))

    final = TeacherStore.open(store)
    final.verify()
    assert final.to_run() == ref_store.to_run()
    cols = ["qid", "qhash", "docid", "dhash", "score", "rank"]
    assert sorted(final.to_table().select(cols).to_pylist(), key=lambda r: (r["qid"], r["docid"])) == sorted(
        ref_store.to_table().select(cols).to_pylist(), key=lambda r: (r["qid"], r["docid"])
    )
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["counts"]["pairs"] == N_QUERIES * N_DOCS
    assert sorted(s["file"] for s in manifest["shards"]) == sorted(
        p.name for p in store.glob("shard-*.parquet")
    )
    assert not list(store.glob("*.partial")) and not list(store.glob(".*.partial"))
