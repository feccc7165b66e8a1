"""The synthetic query store: generated queries with their provenance, resumable and deduplicated.

Layout of a store folder::

    manifest.json          format, generator (kind, settings, fingerprint), dataset (name, corpus
                           fingerprint), seed, per-part counts and sha256, totals, producer, times
    parts/part-00000.jsonl one query per line: {"id", "text", "doc_id", "type"}
    parts/part-00000.docs  the document ids that part covers, one per line (also those that got no
                           query), so a resumed run skips exactly the documents already done

Invariants:

* A part and its ``.docs`` file are written beside their destination and renamed into place
  (``distilir.data._io.atomic_write``); the part is listed in the manifest only after both exist,
  and the manifest itself is replaced atomically. A killed run loses at most the batch in flight;
  files of a part the manifest does not list are deleted on the next open.
* Query ids are ``"<doc_id>-q<k>"`` (k counts the document's kept queries from 0), so they are stable
  across resumed and uninterrupted runs with the same seed.
* Texts are deduplicated over the whole store after normalisation (case, white space, punctuation at
  the ends); a duplicate is dropped and counted in ``manifest["counts"]["duplicates"]``. Empty texts
  are dropped and counted as ``empty``.
* A store belongs to one generator fingerprint and one corpus: opening it with another generator or
  for another corpus raises :class:`QueryStoreError` naming both sides.
* One writer at a time (an exclusive ``flock`` on ``.lock``, released when the process dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distilir.data._io import atomic_write, sha256_file
from distilir.io import producer
from distilir.queries.base import GeneratedQuery, QueryGenerator, QueryGeneratorError, doc_seed
from distilir.types import Document, Query

__all__ = ["FORMAT", "QueryStore", "QueryStoreError", "generate_queries", "normalise_query"]

FORMAT = "distilir-query-store/1"
_LOCK = ".lock"
_STRIP = re.compile(r"^[\W_]+|[\W_]+$")


class QueryStoreError(QueryGeneratorError):
    """A store that cannot be used as asked; the message names both sides and what to do."""


def normalise_query(text: str) -> str:
    """The key texts are deduplicated on: lower case, single spaces, no punctuation at either end."""
    return _STRIP.sub("", " ".join(text.lower().split()))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class QueryStore:
    """A folder of generated queries (see the module docstring). Open with :meth:`open`."""

    def __init__(self, path: Path, manifest: dict[str, Any], lock_fd: int | None) -> None:
        self.path = path
        self._manifest = manifest
        self._lock_fd = lock_fd
        self._rows: list[GeneratedQuery] = []
        self._ids: list[str] = []
        self._done: set[str] = set()
        self._seen: set[str] = set()
        self._load()

    # -- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        generator: QueryGenerator | None = None,
        *,
        dataset: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> QueryStore:
        """Open (or with ``generator``, create or resume) the store at ``path``.

        Args:
            generator: the generator that writes into the store; None opens an existing store to
                read it.
            dataset: ``{"name", "corpus_fingerprint"}`` of the corpus the queries are written for;
                checked against the manifest when resuming.
            seed: the run's seed (documents get ``doc_seed(seed, doc_id)``); part of the identity.
        """
        path = Path(path)
        manifest_file = path / "manifest.json"
        if generator is None:
            if not manifest_file.is_file():
                raise QueryStoreError(
                    f"{path} is not a query store (no manifest.json); create one with "
                    "`distilir queries generate --dataset D --generator SPEC --out PATH`."
                )
            return cls(path, json.loads(manifest_file.read_text()), None)
        path.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(path)
        try:
            wanted = {
                "kind": generator.kind,
                "settings": generator.get_config_dict(),
                "fingerprint": generator.fingerprint,
            }
            if manifest_file.is_file():
                manifest = json.loads(manifest_file.read_text())
                _check_same(path, manifest, wanted, dict(dataset or {}), seed)
            else:
                if any(p for p in path.iterdir() if p.name != _LOCK):
                    raise QueryStoreError(
                        f"{path} exists and holds files but no query-store manifest; choose an empty or "
                        "new folder for --out (nothing was written)."
                    )
                manifest = {
                    "format": FORMAT,
                    "generator": wanted,
                    "dataset": dict(dataset or {}),
                    "seed": int(seed),
                    "parts": [],
                    "counts": {"queries": 0, "documents": 0, "duplicates": 0, "empty": 0},
                    "created": _now(),
                    "producer": producer(),
                }
            store = cls(path, manifest, lock)
            store._cleanup_partials()
            return store
        except BaseException:
            _release_lock(lock)
            raise

    def close(self) -> None:
        _release_lock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> QueryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    @property
    def fingerprint(self) -> str:
        return str(self._manifest["generator"]["fingerprint"])

    def __len__(self) -> int:
        return len(self._rows)

    def done_documents(self) -> set[str]:
        return set(self._done)

    def rows(self) -> list[GeneratedQuery]:
        return list(self._rows)

    def queries(self, types: Iterable[str] | None = None) -> dict[str, Query]:
        """``{query_id: Query}`` of every stored query (of ``types`` when given)."""
        keep = set(types) if types is not None else None
        return {
            qid: Query(qid, row.text)
            for qid, row in zip(self._ids, self._rows, strict=True)
            if keep is None or row.type in keep
        }

    def source_documents(self) -> dict[str, str]:
        """``{query_id: doc_id}``: the document each query was written for."""
        return {qid: row.doc_id for qid, row in zip(self._ids, self._rows, strict=True)}

    def pseudo_qrels(self) -> dict[str, dict[str, int]]:
        """``{query_id: {doc_id: 1}}``: each query's source document as its one relevant document."""
        return {qid: {doc: 1} for qid, doc in self.source_documents().items()}

    def holdout(
        self, n: int, seed: int = 7
    ) -> tuple[dict[str, Query], dict[str, Query], dict[str, dict[str, int]]]:
        """``(train, dev, dev_qrels)``: ``n`` seeded queries held out for model selection on a
        collection without judged queries, each with its source document as the one relevant
        document; the rest to train on."""
        import numpy as np

        queries = self.queries()
        if not 0 < n < len(queries):
            raise QueryStoreError(
                f"cannot hold out {n} of the {len(queries)} queries in {self.path}; "
                f"give 0 < n < {len(queries)} (e.g. 100)"
            )
        ids = sorted(queries)
        pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
        dev_ids = {ids[i] for i in pick.tolist()}
        src = self.source_documents()
        dev = {q: queries[q] for q in sorted(dev_ids)}
        train = {q: v for q, v in queries.items() if q not in dev_ids}
        return train, dev, {q: {src[q]: 1} for q in dev}

    def _load(self) -> None:
        per_doc: dict[str, int] = {}
        for part in self._manifest["parts"]:
            file = self.path / "parts" / part["file"]
            if not file.is_file():
                raise QueryStoreError(
                    f"{file} is listed in the manifest but missing; the store is damaged. Restore the file "
                    "or generate into a new folder."
                )
            with open(file, encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    self._ids.append(row["id"])
                    self._rows.append(GeneratedQuery(row["text"], row["doc_id"], row["type"]))
                    self._seen.add(normalise_query(row["text"]))
                    per_doc[row["doc_id"]] = per_doc.get(row["doc_id"], 0) + 1
            docs = (self.path / "parts" / part["docs"]).read_text(encoding="utf-8").splitlines()
            self._done.update(docs)
        self._per_doc = per_doc

    def _cleanup_partials(self) -> None:
        listed = {p["file"] for p in self._manifest["parts"]} | {p["docs"] for p in self._manifest["parts"]}
        folder = self.path / "parts"
        if folder.is_dir():
            for file in folder.iterdir():
                if file.name not in listed:
                    file.unlink()

    # -- writing -----------------------------------------------------------------------------------

    def _commit(self, docs: Sequence[str], generated: Sequence[list[tuple[str, str]]]) -> int:
        counts = self._manifest["counts"]
        rows = []
        for doc_id, pairs in zip(docs, generated, strict=True):
            for text, qtype in pairs:
                text = " ".join(str(text).split())
                key = normalise_query(text)
                if not key:
                    counts["empty"] += 1
                    continue
                if key in self._seen:
                    counts["duplicates"] += 1
                    continue
                self._seen.add(key)
                k = self._per_doc.get(doc_id, 0)
                self._per_doc[doc_id] = k + 1
                rows.append({"id": f"{doc_id}-q{k}", "text": text, "doc_id": doc_id, "type": qtype})
        n = len(self._manifest["parts"])
        name = f"part-{n:05d}"
        folder = self.path / "parts"
        with atomic_write(folder / f"{name}.jsonl") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with atomic_write(folder / f"{name}.docs") as f:
            f.write("".join(f"{d}\n" for d in docs))
        self._manifest["parts"].append(
            {
                "file": f"{name}.jsonl",
                "docs": f"{name}.docs",
                "documents": len(docs),
                "queries": len(rows),
                "sha256": sha256_file(folder / f"{name}.jsonl"),
            }
        )
        counts["queries"] += len(rows)
        counts["documents"] += len(docs)
        self._manifest["updated"] = _now()
        with atomic_write(self.path / "manifest.json") as f:
            json.dump(self._manifest, f, indent=2, sort_keys=True)
        for row in rows:
            self._ids.append(row["id"])
            self._rows.append(GeneratedQuery(row["text"], row["doc_id"], row["type"]))
        self._done.update(docs)
        return len(rows)

    def generate(
        self,
        generator: QueryGenerator,
        documents: Sequence[Document],
        *,
        batch_docs: int = 64,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Generate queries for every document not yet done; returns counts and throughput."""
        if self._lock_fd is None:
            raise QueryStoreError(f"{self.path} was opened for reading; open it with a generator to write.")
        if generator.fingerprint != self.fingerprint:
            raise QueryStoreError(
                f"generator {generator.fingerprint} is not the store's {self.fingerprint}; open the store "
                "with the generator that created it."
            )
        if batch_docs < 1:
            raise QueryStoreError(f"batch_docs must be >= 1, got {batch_docs}")
        todo = [d for d in documents if d.id not in self._done]
        seed = int(self._manifest["seed"])
        t0 = time.perf_counter()
        written = 0
        bar = tqdm(total=len(todo), desc=f"queries ({generator.kind})", unit="doc", disable=not progress)
        for start in range(0, len(todo), batch_docs):
            batch = todo[start : start + batch_docs]
            generated = generator.generate(batch, [doc_seed(seed, d.id) for d in batch])
            if len(generated) != len(batch):
                raise QueryGeneratorError(
                    f"{generator.kind} returned {len(generated)} lists for {len(batch)} documents"
                )
            written += self._commit([d.id for d in batch], generated)
            bar.update(len(batch))
        bar.close()
        seconds = time.perf_counter() - t0
        return {
            "documents": len(todo),
            "skipped_done": len(documents) - len(todo),
            "queries": written,
            "total_queries": len(self),
            "seconds": round(seconds, 2),
            "queries_per_second": round(written / seconds, 2) if seconds > 0 else None,
            "seconds_per_1000_docs": round(1000 * seconds / len(todo), 2) if todo else None,
            **{k: v for k, v in self._manifest["counts"].items() if k in ("duplicates", "empty")},
        }

    def __repr__(self) -> str:
        gen = self._manifest["generator"]
        who = f"{gen['kind']}:{gen['fingerprint']}"
        return f"QueryStore({str(self.path)!r}, generator={who}, queries={len(self)})"


def _check_same(
    path: Path, manifest: Mapping[str, Any], wanted: Mapping[str, Any], dataset: dict, seed: int
) -> None:
    if manifest.get("format") != FORMAT:
        raise QueryStoreError(f"{path}: unknown store format {manifest.get('format')!r}, expected {FORMAT!r}")
    have = manifest["generator"]
    if have["fingerprint"] != wanted["fingerprint"]:
        raise QueryStoreError(
            f"{path} holds queries of generator {have['kind']} {have['fingerprint']} "
            f"(settings {have['settings']}), not of {wanted['kind']} {wanted['fingerprint']} "
            f"(settings {wanted['settings']}); use another --out folder, or the store's own settings."
        )
    if int(manifest.get("seed", 0)) != int(seed):
        raise QueryStoreError(
            f"{path} was generated with seed {manifest.get('seed')}, not {seed}; resume with it."
        )
    old = manifest.get("dataset") or {}
    for key in ("name", "corpus_fingerprint"):
        if dataset.get(key) and old.get(key) and dataset[key] != old[key]:
            raise QueryStoreError(
                f"{path} holds queries for {key} {old[key]!r}, not {dataset[key]!r}: the corpus changed. "
                "Generate into a new folder."
            )


def _acquire_lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise QueryStoreError(f"another process is writing {path}; wait for it to finish.") from None
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(ImportError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def generate_queries(
    dataset: Any,
    generator: QueryGenerator,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    max_docs: int | None = None,
    batch_docs: int = 64,
    progress: bool = True,
) -> tuple[QueryStore, dict[str, Any]]:
    """Generate queries for ``dataset``'s corpus (its first ``max_docs`` documents in id order, when
    given) into the store at ``out``, resuming what is there. Returns the store (closed) and stats."""
    from distilir.candidates.first_stage import _corpus_fingerprint

    corpus = dataset.corpus()
    docs = [corpus[d] for d in sorted(corpus)]
    if max_docs is not None:
        if max_docs < 1:
            raise QueryStoreError(f"max_docs must be >= 1, got {max_docs}")
        docs = docs[:max_docs]
    if not docs:
        raise QueryStoreError(f"{dataset.name} has no documents to write queries for.")
    fingerprint, _ = _corpus_fingerprint(dataset)
    info = {"name": dataset.name, "corpus_fingerprint": fingerprint}
    with QueryStore.open(out, generator, dataset=info, seed=seed) as store:
        stats = store.generate(generator, docs, batch_docs=batch_docs, progress=progress)
    return store, stats
