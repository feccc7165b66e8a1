"""The teacher score store: resumable, kill-safe teacher scores on disk, plus training exports.

Scoring candidate lists with a slow teacher takes hours; the store makes that work resumable and
reusable. Scores are keyed by (teacher fingerprint, query, document), so a run that is stopped (Ctrl-C,
SIGKILL, power loss) and started again scores only what is missing, and scores of two different
teachers (or of one model with another prompt or max length) can never be mixed.

On disk (plain files; read them with pyarrow/pandas/duckdb, no distilir needed)::

    store/
      manifest.json            # the commit point (schema below)
      shard-00000.parquet      # one file per committed batch of queries
      shard-00001.parquet
      .lock                    # flock(2) target held by the one process that writes

Shard schema (every shard; Parquet, zstd)::

    qid    string   query id, as given by the caller
    qhash  string   sha256(UTF-8 query text), first 16 hex characters
    docid  string   document id, as given by the caller
    dhash  string   sha256(UTF-8 document text), first 16 hex characters (the text the teacher read)
    score  float64  the teacher's raw score, in the unit of manifest["score_type"]: "logit" = log-odds,
                    not a probability; "similarity" = inner product/cosine; "bm25"; "log_likelihood" =
                    mean log P(query | passage), <= 0; "normalized" = an ensemble's weighted mean of
                    per-query normalised scores (comparable within one query only). Higher = more relevant.
                    float64 so that nothing a teacher returns is rounded by the store.
    rank   int32    1-based position of the document in the candidate list it was scored with (the
                    first-stage order given by the caller, NOT the teacher's order)

Invariants: each (qid, docid) appears at most once in the whole store; a qid always has the same qhash
and a docid the same dhash (texts that change are refused, see :meth:`TeacherStore.score`); every
shard's Parquet metadata carries the store format and the teacher fingerprint; scores are finite.

Manifest (``format: distilir-teacher-scores/1``)::

    format, teacher {name, fingerprint, score_type, config (the full get_config_dict())},
    model (identity: name, path, file fingerprint or hub revision), prompt_template, max_length, dtype,
    score_type, normalization, candidates [free dicts given by callers: retriever, depth, dataset, ...],
    created, updated (ISO-8601 UTC), counts {queries, pairs, shards},
    shards [{file, rows, queries, sha256}], columns {name: description}, producer {name, version, python}

Crash safety. A batch of queries is scored in memory, then written to ``.shard-NNNNN.parquet.<pid>.partial``,
fsynced and renamed (``os.replace``, atomic) to ``shard-NNNNN.parquet``; only then is the manifest
rewritten the same way (temp file, fsync, rename, fsync of the directory). So at any instant every
file named ``shard-*.parquet`` is complete. A process killed between the two renames leaves a complete
shard the manifest does not list yet: opening the store *adopts* it (after checking its fingerprint
metadata; writers record it in the manifest, readers include it in memory), so nothing scored is lost
or scored again. ``*.partial`` files are left-overs of a batch in flight and are deleted by the next
writer. Hence a run killed at any point and restarted loses at most the batch in flight and scores no
committed pair twice (tested with a real SIGKILL in ``tests/distilir/teachers/test_store_resume.py``).
One process writes at a time (``flock`` on ``.lock``, released by the kernel if the process dies).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distilir.io import producer, sha256_file, write_atomic
from distilir.teachers.base import Teacher, teacher_fingerprint, text_hash
from distilir.teachers.store_exports import StoreExports
from distilir.teachers.store_format import (
    COLUMNS,
    FORMAT,
    LOCK,
    MANIFEST,
    PARTIAL,
    SHARD,
    StoreError,
    batch_rows,
    now,
    shard_schema,
    text_of,
)
from distilir.types import Run

__all__ = ["FORMAT", "Scorer", "StoreError", "TeacherStore", "batch_rows"]

logger = logging.getLogger(__name__)

#: How :meth:`TeacherStore.score` has batches scored: ``[(batch_index, query_texts, document_lists)]``
#: in, ``(batch_index, scores)`` out, in any order.
Scorer = Callable[[list[tuple[int, list[str], list[list[str]]]]], Iterable[tuple[int, Any]]]


class TeacherStore(StoreExports):
    """Teacher scores of (query, document) pairs on disk; see the module docstring for the format.

    Open with :meth:`open` (``TeacherStore.open(path, teacher)`` to write, ``TeacherStore.open(path)``
    to read); use as a context manager or call :meth:`close` to release the writer lock. An open store
    holds every stored score in memory (plain dicts: the dedup index and what :meth:`get` reads), which
    suits stores of up to a few million pairs.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], *, writable: bool, lock_fd: int | None) -> None:
        self.path = path
        self._manifest = manifest
        self.writable = writable
        self._lock_fd = lock_fd
        self._scores: dict[str, dict[str, float]] = {}
        self._ranks: dict[str, dict[str, int]] = {}
        self._qhash: dict[str, str] = {}
        self._dhash: dict[str, str] = {}
        self._load()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        teacher: Teacher | None = None,
        *,
        candidate_source: Mapping[str, Any] | None = None,
    ) -> TeacherStore:
        """Create or open the store at ``path``.

        With ``teacher``: opens for writing (creating the store if needed); the teacher's fingerprint
        must equal the store's, else :class:`StoreError` is raised before any file is touched.
        Without: opens an existing store read-only. ``candidate_source`` (e.g. ``{"retriever": "bm25",
        "depth": 100, "dataset": "scifact", "split": "test"}``) is recorded in the manifest.
        """
        path = Path(path)
        manifest_file = path / MANIFEST
        manifest = None
        if manifest_file.is_file():
            try:
                manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise StoreError(f"{manifest_file} is not valid JSON ({exc}); the store is damaged.") from exc
            if manifest.get("format") != FORMAT:
                raise StoreError(
                    f"{path} holds format {manifest.get('format')!r}, expected {FORMAT!r}: it is not a "
                    "teacher score store of this version. Use another directory."
                )
        if teacher is None:
            if manifest is None:
                raise StoreError(
                    f"{path} is not a teacher score store (no {MANIFEST}). To create one, pass the teacher: "
                    "TeacherStore.open(path, teacher)."
                )
            return cls(path, manifest, writable=False, lock_fd=None)

        if not isinstance(teacher, Teacher):
            raise StoreError(f"teacher must implement the Teacher protocol, got {type(teacher).__name__}")
        fingerprint = teacher_fingerprint(teacher)
        if manifest is not None:
            theirs = manifest.get("teacher", {}).get("fingerprint")
            if theirs != fingerprint:
                stored = manifest.get("teacher", {})
                differs = _settings_diff(
                    stored.get("config", {}), json.loads(json.dumps(teacher.get_config_dict(), default=str))
                )
                raise StoreError(
                    f"{path} holds scores of teacher {stored.get('name')!r} (fingerprint {theirs}), not of "
                    f"{teacher.name!r} (fingerprint {fingerprint})"
                    + (f"; settings that differ (stored -> given): {differs}" if differs else "")
                    + ". Scores of different teachers (or of one model with other settings or weights) never "
                    "share a store: open another directory for this teacher. Nothing was changed."
                )
        elif path.exists() and any(p.name != LOCK for p in path.iterdir()):
            raise StoreError(
                f"{path} exists, is not empty and has no {MANIFEST}: it is not a teacher score store. "
                "Pick an empty or new directory."
            )
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(path)
        try:
            if manifest_file.is_file():  # re-read under the lock: a writer may have committed meanwhile
                manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
                if manifest.get("teacher", {}).get("fingerprint") != fingerprint:
                    raise StoreError(f"{path} now holds scores of another teacher; use another directory")
            if manifest is None:
                manifest = cls._new_manifest(teacher, fingerprint)
            sources = manifest.setdefault("candidates", [])
            changed = not manifest_file.is_file()
            if candidate_source is not None and dict(candidate_source) not in sources:
                sources.append(json.loads(json.dumps(dict(candidate_source), default=str)))
                changed = True
            store = cls(path, manifest, writable=True, lock_fd=lock_fd)
            store._cleanup_partials()
            if changed or store._adopted:
                store._write_manifest()
            return store
        except BaseException:
            _release_lock(lock_fd)
            raise

    @staticmethod
    def _new_manifest(teacher: Teacher, fingerprint: str) -> dict[str, Any]:
        config = json.loads(json.dumps(teacher.get_config_dict(), default=str))
        created = now()
        return {
            "format": FORMAT,
            "teacher": {
                "name": teacher.name,
                "fingerprint": fingerprint,
                "score_type": teacher.score_type,
                "config": config,
            },
            "model": config.get("model"),
            "prompt_template": config.get("prompt_template", config.get("prompt")),
            "max_length": config.get("max_length"),
            "dtype": config.get("dtype"),
            "score_type": teacher.score_type,
            "normalization": config.get("normalization"),
            "candidates": [],
            "created": created,
            "updated": created,
            "counts": {"queries": 0, "pairs": 0, "shards": 0},
            "shards": [],
            "columns": dict(COLUMNS),
            "producer": producer(),
        }

    def close(self) -> None:
        """Release the writer lock (the store stays readable)."""
        if self._lock_fd is not None:
            _release_lock(self._lock_fd)
            self._lock_fd = None
        self.writable = False

    def __enter__(self) -> TeacherStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ reading
    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._manifest))

    @property
    def fingerprint(self) -> str:
        return self._manifest["teacher"]["fingerprint"]

    @property
    def score_type(self) -> str:
        return self._manifest["score_type"]

    def __len__(self) -> int:
        return sum(len(v) for v in self._scores.values())

    def __contains__(self, key: tuple[str, str]) -> bool:
        qid, docid = key
        return docid in self._scores.get(qid, {})

    def queries(self) -> list[str]:
        """Query ids with at least one stored score, in the order they were first stored."""
        return list(self._scores)

    def get(self, qid: str) -> dict[str, float]:
        """``{docid: score}`` of one query (empty if nothing is stored for it), in candidate order."""
        ranks = self._ranks.get(qid, {})
        return dict(sorted(self._scores.get(qid, {}).items(), key=lambda kv: (ranks.get(kv[0], 0), kv[0])))

    def to_run(self) -> Run:
        """All scores as a run ``{qid: {docid: score}}`` (evaluate it with ir_measures)."""
        return {q: self.get(q) for q in self._scores}

    def pairs(self) -> Iterator[tuple[str, str, float]]:
        """Every stored ``(qid, docid, score)``."""
        for qid, scores in self._scores.items():
            for docid, s in scores.items():
                yield qid, docid, s

    def to_table(self) -> Any:
        """All shards as one pyarrow Table (the on-disk rows, in shard order)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [self.path / s["file"] for s in self._manifest["shards"]] + [
            self.path / f for f in self._extra
        ]
        if not files:
            return shard_schema(self.fingerprint, 0).empty_table()
        return pa.concat_tables([pq.read_table(f) for f in files]).replace_schema_metadata(None)

    def verify(self) -> None:
        """Check every shard listed in the manifest against its recorded sha256."""
        for s in self._manifest["shards"]:
            f = self.path / s["file"]
            if not f.is_file():
                raise StoreError(f"{f} is listed in the manifest but missing; the store is damaged.")
            if s.get("sha256") and sha256_file(f) != s["sha256"]:
                raise StoreError(f"{f} does not match its sha256 in the manifest; the store is damaged.")

    def _load(self) -> None:
        import pyarrow.parquet as pq

        listed = [s["file"] for s in self._manifest.get("shards", [])]
        for name in listed:
            if not (self.path / name).is_file():
                raise StoreError(
                    f"{self.path / name} is listed in {MANIFEST} but missing: the store was damaged "
                    "(files deleted by hand?). Restore the file or start a new store."
                )
        on_disk = sorted(
            (p.name for p in self.path.iterdir() if SHARD.match(p.name)) if self.path.is_dir() else [],
            key=lambda n: int(SHARD.match(n).group(1)),  # type: ignore[union-attr]
        )
        orphans = [n for n in on_disk if n not in set(listed)]
        self._extra: list[str] = []
        self._adopted: list[dict[str, Any]] = []
        for name in orphans:
            meta = pq.read_schema(self.path / name).metadata or {}
            fp = meta.get(b"distilir.teacher_fingerprint", b"").decode()
            if meta.get(b"distilir.format", b"").decode() != FORMAT or fp != self.fingerprint:
                raise StoreError(
                    f"{self.path / name} is not listed in the manifest and was not written for this teacher "
                    f"(fingerprint {fp or 'none'}); move it out of the store directory."
                )
            self._extra.append(name)
        for name in listed + self._extra:
            table = pq.read_table(self.path / name)
            self._index_rows(table.to_pydict())
        if self.writable:
            for name in self._extra:
                table_rows = pq.read_metadata(self.path / name).num_rows
                qids = pq.read_table(self.path / name, columns=["qid"]).column("qid").unique()
                self._adopted.append(
                    {
                        "file": name,
                        "rows": table_rows,
                        "queries": len(qids),
                        "sha256": sha256_file(self.path / name),
                    }
                )
            if self._adopted:
                logger.info(
                    "adopting %d shard(s) written before the manifest by an interrupted run: %s",
                    len(self._adopted),
                    ", ".join(s["file"] for s in self._adopted),
                )
                self._manifest["shards"].extend(self._adopted)
                self._extra = []
                self._refresh_counts()

    def _index_rows(self, rows: Mapping[str, list[Any]]) -> None:
        for qid, qh, docid, dh, score, rank in zip(
            rows["qid"], rows["qhash"], rows["docid"], rows["dhash"], rows["score"], rows["rank"], strict=True
        ):
            per_q = self._scores.setdefault(qid, {})
            if docid in per_q:  # never written twice by this code; keep the first if a file was copied in
                continue
            per_q[docid] = float(score)
            self._ranks.setdefault(qid, {})[docid] = int(rank)
            self._qhash.setdefault(qid, qh)
            self._dhash.setdefault(docid, dh)

    def _refresh_counts(self) -> None:
        self._manifest["counts"] = {
            "queries": len(self._scores),
            "pairs": len(self),
            "shards": len(self._manifest["shards"]),
        }

    # ------------------------------------------------------------------ writing
    def _cleanup_partials(self) -> None:
        for p in self.path.iterdir():
            if PARTIAL.match(p.name):
                p.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        self._manifest["updated"] = now()
        self._refresh_counts()
        blob = json.dumps(self._manifest, indent=2, sort_keys=True) + "\n"
        write_atomic(self.path / MANIFEST, lambda tmp: tmp.write_text(blob, encoding="utf-8"))

    def _next_shard(self) -> int:
        used = [int(SHARD.match(s["file"]).group(1)) for s in self._manifest["shards"]]  # type: ignore[union-attr]
        used += [int(SHARD.match(p.name).group(1)) for p in self.path.iterdir() if SHARD.match(p.name)]  # type: ignore[union-attr]
        return max(used, default=-1) + 1

    def _commit(self, rows: dict[str, list[Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        index = self._next_shard()
        name = f"shard-{index:05d}.parquet"
        table = pa.Table.from_pydict(rows, schema=shard_schema(self.fingerprint, index))
        write_atomic(self.path / name, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        # The shard has landed: from here on it counts as stored (a crash now is recovered on open).
        self._index_rows(rows)
        self._manifest["shards"].append(
            {
                "file": name,
                "rows": table.num_rows,
                "queries": len(set(rows["qid"])),
                "sha256": sha256_file(self.path / name),
            }
        )
        self._write_manifest()

    def score(
        self,
        teacher: Teacher,
        queries: Mapping[str, Any],
        docs: Mapping[str, Any],
        candidates: Mapping[str, Sequence[str]],
        *,
        batch_queries: int = 16,
        progress: bool = True,
        scorer: Scorer | None = None,
        label: str | None = None,
    ) -> dict[str, int]:
        """Score every candidate pair not stored yet and store it, one shard per batch of queries.

        Args:
            teacher: must have the store's fingerprint.
            queries: ``{qid: text}`` (or ``Query`` objects).
            docs: ``{docid: text}`` (or ``Document`` objects; their ``full_text`` is scored).
            candidates: ``{qid: [docid, ...]}`` in first-stage order (the order gives ``rank``).
            batch_queries: queries per teacher call and per shard; a kill loses at most one batch.
            progress: tqdm bar over pairs.
            scorer: how batches are scored: a callable taking ``[(batch_index, query_texts,
                document_lists), ...]`` and yielding ``(batch_index, scores)`` in any order as they
                finish (the Ray driver passes its actor pool); default: ``teacher.score_many`` on
                each batch in turn, lazily, so a kill loses at most one batch.
            label: what the progress bar says is scoring (default: the teacher's name).

        Every id is checked before anything is scored: unknown query or document ids, and ids whose
        text differs from the text already stored under that id, raise :class:`StoreError` and leave
        the store as it was. Returns ``{"scored", "skipped", "shards"}``.
        """
        if not self.writable:
            raise StoreError(
                f"{self.path} was opened read-only (or closed); open it with its teacher to score: "
                "TeacherStore.open(path, teacher)"
            )
        fp = teacher_fingerprint(teacher)
        if fp != self.fingerprint:
            raise StoreError(
                f"teacher {teacher.name!r} has fingerprint {fp}, but this store holds {self.fingerprint}; "
                "score with the teacher the store was opened with, or use another store."
            )
        if not isinstance(batch_queries, int) or batch_queries < 1:
            raise StoreError(f"batch_queries must be a positive int, got {batch_queries!r}")
        todo, skipped = self._plan(queries, docs, candidates)
        total = sum(len(pending) for _, pending in todo.values())
        scored = shards = 0
        qids = list(todo)
        batches = [qids[i : i + batch_queries] for i in range(0, len(qids), batch_queries)]
        items = [
            (b, [todo[q][0][0] for q in batch], [[t for (_, _, _, t) in todo[q][1]] for q in batch])
            for b, batch in enumerate(batches)
        ]
        if scorer is None:

            def scorer(items: list[tuple[int, list[str], list[list[str]]]]) -> Iterator[tuple[int, Any]]:
                return ((b, teacher.score_many(q, d)) for b, q, d in items)

        desc = f"scoring with {label or teacher.name}"
        with tqdm(total=total, desc=desc, unit="pair", disable=not progress) as bar:
            for batch_id, results in scorer(items):
                rows = batch_rows(batches[batch_id], todo, results)
                try:
                    self._commit(rows)
                except BaseException:
                    # Interrupted while committing: the disk is the truth; re-read it (a shard that
                    # landed is adopted) so this object stays consistent, then re-raise.
                    self._reload()
                    raise
                scored += len(rows["qid"])
                shards += 1
                bar.update(len(rows["qid"]))
        return {"scored": scored, "skipped": skipped, "shards": shards}

    def _reload(self) -> None:
        manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        self._manifest = manifest
        self._scores, self._ranks, self._qhash, self._dhash = {}, {}, {}, {}
        self._load()
        if self._adopted:
            self._write_manifest()

    def _plan(
        self, queries: Mapping[str, Any], docs: Mapping[str, Any], candidates: Mapping[str, Sequence[str]]
    ) -> tuple[dict[str, tuple[tuple[str, str], list[tuple[str, str, int, str]]]], int]:
        """Validate everything, then list the pairs still to score, per query in candidate order."""
        if not isinstance(candidates, Mapping):
            raise StoreError(
                f"candidates must be a mapping {{qid: [docid, ...]}}, got {type(candidates).__name__}"
            )
        bad_q = [q for q in candidates if q not in queries]
        bad_d = sorted({d for ds in candidates.values() for d in ds if d not in docs})
        if bad_q or bad_d:
            parts = []
            if bad_q:
                parts.append(f"{len(bad_q)} query id(s) not in queries (e.g. {bad_q[:5]})")
            if bad_d:
                parts.append(f"{len(bad_d)} document id(s) not in docs (e.g. {bad_d[:5]})")
            raise StoreError(
                "candidates reference unknown ids: " + "; ".join(parts) + ". Pass the queries and documents "
                "the candidate lists were built from (nothing was scored; the store is unchanged)."
            )
        q_conflicts, d_conflicts = [], []
        dhash: dict[str, str] = {}
        dtext: dict[str, str] = {}
        todo: dict[
            str, tuple[tuple[str, str], list[tuple[str, str, int, str]]]
        ] = {}  # qid -> ((text, hash), [(docid, dhash, rank, text)])
        skipped = 0
        for qid, doc_ids in candidates.items():
            if isinstance(doc_ids, str):
                raise StoreError(f"candidates[{qid!r}] is a string; expected a list of document ids")
            q_text = text_of(queries[qid], "query", qid)
            qh = text_hash(q_text)
            if self._qhash.get(qid, qh) != qh:
                q_conflicts.append(qid)
            stored = self._scores.get(qid, {})
            pending = []
            seen: set[str] = set()
            for rank, docid in enumerate(doc_ids, start=1):
                if docid in seen:
                    continue
                seen.add(docid)
                if docid not in dhash:
                    dtext[docid] = text_of(docs[docid], "document", docid)
                    dhash[docid] = text_hash(dtext[docid])
                    if self._dhash.get(docid, dhash[docid]) != dhash[docid]:
                        d_conflicts.append(docid)
                if docid in stored:
                    skipped += 1
                    continue
                pending.append((docid, dhash[docid], rank, dtext[docid]))
            if pending:
                todo[qid] = ((q_text, qh), pending)
        if q_conflicts or d_conflicts:
            raise StoreError(
                f"{len(q_conflicts)} query id(s) (e.g. {q_conflicts[:5]}) and {len(d_conflicts)} document "
                f"id(s) (e.g. {d_conflicts[:5]}) have a different text than when their scores were stored. "
                "The collection changed: score it into a new store (nothing was scored; the store is "
                "unchanged)."
            )
        return todo, skipped

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "r"
        return (
            f"TeacherStore({str(self.path)!r}, teacher={self._manifest['teacher']['name']!r}, "
            f"pairs={len(self)}, mode={mode!r})"
        )


def _settings_diff(stored: Any, given: Any, prefix: str = "", limit: int = 6) -> str:
    """``"key: a -> b; ..."`` for the settings two teacher configs disagree on (nested keys dotted)."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
        elif a != b:
            out.append(f"{key or 'config'}: {a!r} -> {b!r}")

    walk(stored, given, prefix)
    shown = "; ".join(out[:limit])
    return shown + (f"; and {len(out) - limit} more" if len(out) > limit else "")


def _acquire_lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
        return None
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"another process (or another open TeacherStore in this process) is writing {path}; "
            "wait for it to finish, or close() the other store object. A killed writer releases the "
            "lock automatically."
        ) from None
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is None:
        return
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    except ImportError:  # pragma: no cover
        pass
    os.close(fd)
