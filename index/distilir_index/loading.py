"""Open any saved index with one call, and the document table every index kind shares.

``load_index(path)`` reads ``path/manifest.json``, looks its ``kind`` up in a small registry and
calls that class's ``load(path, **kwargs)``::

    from distilir_index.loading import load_index, register_index_kind

    index = load_index("indexes/scifact-bm25")          # -> BM25Index
    index = load_index("indexes/scifact-dense", mmap=True)  # -> DenseIndex, FAISS file memory-mapped

    index = make_index("dense", model="all-MiniLM-L6-v2", factory="flat")  # a new, empty index
    register_index_kind("mine", "my_pkg.index:MyIndex")  # lazily imported on first use

Built-in kinds are registered as import strings, so importing this module imports neither FAISS nor
bm25s.

``DocumentTable`` holds what every index keeps beside its scoring structure: external string ids
and their internal int64 positions, a tombstone mask, per-document metadata and (optionally) texts,
and per-document digests for the corpus fingerprint. It is hand-written because it is plain
bookkeeping that each backend (FAISS, bm25s, the sparse inverted index) needs in the same shape.

On-disk schema of the table (one generation of an index directory):

* ``docs.jsonl`` -- one JSON object per internal position, in position order:
  ``{"id": str, "metadata": {...}}`` plus ``"text": str`` when texts are stored; a deleted
  position (tombstone) is ``{"id": null}``.
* ``digests.npy`` -- uint8 ``[positions, 32]``: sha256 of ``id + "\\0" + text`` per position (the
  per-document term of :class:`~distilir_index.base.CorpusFingerprint`), so the fingerprint can be
  updated on delete even when texts are not stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.base import ArtifactDir, BaseIndex, Hit, IndexError_, ManifestError, read_manifest
from distilir_index.registry import Registry

__all__ = [
    "INDEXES",
    "DocumentTable",
    "load_index",
    "make_index",
    "register_index_kind",
    "registered_index_kinds",
]

#: Index kinds: kind -> "module:Class", imported on first use. Each class has a ``kind``, a one-line
#: ``help``, ``from_settings(**settings)`` (what :func:`make_index` calls) and ``load(path, **kw)``.
INDEXES = Registry(
    "index",
    {
        "bm25": "distilir_index.bm25:BM25Index",
        "dense": "distilir_index.dense:DenseIndex",
        "sparse": "distilir_index.sparse:SparseIndex",
        "hybrid": "distilir_index.hybrid:HybridIndex",
        "lucene-bm25": "distilir_index.lucene:LuceneBM25Index",
        "lucene-impact": "distilir_index.lucene:LuceneImpactIndex",
        "milvus": "distilir_index.milvus:MilvusIndex",
    },
    error=ManifestError,
)


def register_index_kind(kind: str, cls: Any, *, replace: bool = False) -> None:
    """Make ``load_index`` / ``make_index`` handle ``kind`` with ``cls`` (an index class with a
    ``load(path, **kw)`` classmethod, or a ``"module:Class"`` string imported lazily).

    Registering a kind that is already registered to something else raises, unless ``replace=True``.
    """
    if not isinstance(cls, str) and not (isinstance(cls, type) and issubclass(cls, BaseIndex)):
        raise TypeError(
            f"{cls!r} is not an index class (a subclass of distilir_index.base.BaseIndex with load(path)); "
            "register the index class itself (e.g. register_index_kind('sparse', SparseIndex))"
        )
    INDEXES.register(kind, cls, replace=replace)


def registered_index_kinds() -> list[str]:
    """The kinds ``load_index`` and ``make_index`` know."""
    return INDEXES.kinds()


def make_index(kind: str, **settings: Any) -> Any:
    """A new, empty index of ``kind`` built from keyword settings (the class's ``from_settings``).

    ``make_index("bm25", k1=0.9, b=0.4)``, ``make_index("dense", model="all-MiniLM-L6-v2",
    factory="flat")``, ``make_index("sparse", model="splade-tiny")``: ``model`` names an encoder (a hub
    id, a folder or a packaged name), ``batch_size`` its encoding batch."""
    return INDEXES.get(kind).from_settings(**settings)


def load_index(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Open the index saved in ``path`` with the class registered for its manifest ``kind``.

    Keyword arguments go to that class's ``load`` (e.g. ``mmap=True``, ``encoder=...`` for dense).
    Raises ManifestError when ``path`` is not an index directory or its kind is not registered.
    """
    manifest = read_manifest(path)
    kind = manifest.get("kind")
    if not isinstance(kind, str) or kind not in INDEXES:
        raise ManifestError(
            f"{path} holds an index of kind {kind!r}, which no class is registered for "
            f"(registered: {registered_index_kinds()}). Import the module that defines it, or call "
            f"distilir_index.loading.register_index_kind({kind!r}, TheIndexClass)."
        )
    return INDEXES.get(kind).load(path, **kwargs)


# ---------------------------------------------------------------------------------------------------
# The document table shared by index kinds
# ---------------------------------------------------------------------------------------------------


def _digest(doc_id: str, text: str) -> bytes:
    # The per-document term of distilir_index.base.CorpusFingerprint (sha256 of id, NUL, text);
    # tests/distilir_index/test_loading.py checks that both agree.
    return sha256(doc_id.encode() + b"\x00" + text.encode()).digest()


class DocumentTable:
    """External ids <-> internal positions, tombstones, metadata, texts and fingerprint digests.

    Positions are assigned in insertion order and never reused until :meth:`compact`. A deleted
    position keeps its slot (``ids[p] is None``, ``live[p]`` is False) so that structures indexed by
    position (a FAISS index, a bm25s matrix) stay aligned.

    Args:
        store_text: keep document texts (returned in hits and saved in ``docs.jsonl``).
    """

    def __init__(self, store_text: bool = True) -> None:
        self.store_text = bool(store_text)
        self.ids: list[str | None] = []
        self.metadata: list[Mapping[str, Any]] = []
        self.texts: list[str | None] | None = [] if self.store_text else None
        self.position: dict[str, int] = {}
        self._live = np.zeros(0, dtype=bool)
        self._digests = np.zeros((0, 32), dtype=np.uint8)
        self._n = 0

    # -- size and state --------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of live documents."""
        return len(self.position)

    @property
    def n_positions(self) -> int:
        """Number of positions, deleted ones included."""
        return self._n

    @property
    def live(self) -> np.ndarray:
        """Boolean mask over positions: True where the document is not deleted (a view; do not edit)."""
        return self._live[: self._n]

    @property
    def n_deleted(self) -> int:
        return self._n - len(self.position)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.position

    # -- writes ----------------------------------------------------------------------------------
    def check_new(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> tuple[list[str], list[str] | None, list[Mapping[str, Any]]]:
        """Validate a batch to add without changing anything; returns it as lists."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of document ids, got a single string; wrap it in a list")
        ids = list(ids)
        for i in ids:
            if not isinstance(i, str) or not i:
                raise TypeError(f"document ids must be non-empty strings, got {i!r}; convert ids with str()")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"document id {dup!r} appears more than once in this batch; ids must be unique")
        present = [i for i in ids if i in self.position]
        if present:
            raise ValueError(
                f"{len(present)} document id(s) are already in the index (e.g. {present[0]!r}); "
                "delete them first to replace them"
            )
        if texts is not None:
            if isinstance(texts, (str, bytes)):
                raise TypeError("texts must be a list of strings, got a single string; wrap it in a list")
            texts = list(texts)
            if len(texts) != len(ids):
                raise ValueError(f"got {len(ids)} ids but {len(texts)} texts; pass one text per id")
            for t in texts:
                if not isinstance(t, str):
                    raise TypeError(f"texts must be strings, got {type(t).__name__}: {t!r}")
        if metadata is None:
            metas: list[Mapping[str, Any]] = [{} for _ in ids]
        else:
            if isinstance(metadata, Mapping):
                raise TypeError("metadata must be a list with one mapping per document, got a single mapping")
            metas = [m if m is not None else {} for m in metadata]
            if len(metas) != len(ids):
                raise ValueError(f"got {len(ids)} ids but {len(metas)} metadata entries; pass one per id")
            for m in metas:
                if not isinstance(m, Mapping):
                    raise TypeError(f"each metadata entry must be a mapping (dict), got {type(m).__name__}")
        return ids, texts, metas

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """Append documents; returns their new positions (int64). Validates first (see check_new)."""
        ids, texts, metas = self.check_new(ids, texts, metadata)
        n = len(ids)
        start = self._n
        self._reserve(start + n)
        self._live[start : start + n] = True
        tx = texts if texts is not None else [""] * n
        self._digests[start : start + n] = np.frombuffer(
            b"".join(_digest(i, t) for i, t in zip(ids, tx, strict=True)), dtype=np.uint8
        ).reshape(n, 32)
        self.ids.extend(ids)
        self.metadata.extend(dict(m) for m in metas)
        if self.texts is not None:
            self.texts.extend(texts if texts is not None else [None] * n)
        for k, i in enumerate(ids):
            self.position[i] = start + k
        self._n = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def delete(self, ids: Iterable[str]) -> np.ndarray:
        """Tombstone documents; unknown ids are ignored. Returns the deleted positions (int64)."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of document ids, got a single string; wrap it in a list")
        out = []
        for i in ids:
            p = self.position.pop(i, None)
            if p is None:
                continue
            out.append(p)
            self._live[p] = False
            self.ids[p] = None
            self.metadata[p] = {}
            if self.texts is not None:
                self.texts[p] = None
        return np.asarray(sorted(out), dtype=np.int64)

    def compact(self) -> np.ndarray:
        """Drop deleted positions; returns the old positions of the kept documents (new order)."""
        keep = np.flatnonzero(self.live).astype(np.int64)
        self.ids = [self.ids[p] for p in keep]
        self.metadata = [self.metadata[p] for p in keep]
        if self.texts is not None:
            self.texts = [self.texts[p] for p in keep]
        self._digests = self._digests[keep].copy()
        self._live = np.ones(len(keep), dtype=bool)
        self._n = len(keep)
        self.position = {i: k for k, i in enumerate(self.ids)}  # type: ignore[misc]
        return keep

    def _reserve(self, n: int) -> None:
        if n <= len(self._live):
            return
        cap = max(n, 2 * len(self._live), 1024)
        live = np.zeros(cap, dtype=bool)
        live[: self._n] = self._live[: self._n]
        digests = np.zeros((cap, 32), dtype=np.uint8)
        digests[: self._n] = self._digests[: self._n]
        self._live, self._digests = live, digests

    # -- reads -----------------------------------------------------------------------------------
    def allowed(
        self, filters: Mapping[str, Any] | None = None, ids: Iterable[str] | None = None
    ) -> np.ndarray | None:  # noqa: A002
        """Live positions passing ``filters`` and among ``ids`` (None: no restriction beyond deletions)."""
        from distilir_index.filters import allowed_positions

        return allowed_positions(
            self.metadata, filters, ids=ids, id_to_position=self.position, live=self.live
        )

    def hit(self, position: int, score: float) -> Hit:
        text = self.texts[position] if self.texts is not None else None
        return Hit(id=self.ids[position], score=float(score), text=text, metadata=self.metadata[position])  # type: ignore[arg-type]

    def corpus(self) -> dict[str, Any]:
        """``{"count", "fingerprint"}`` over live documents, equal to CorpusFingerprint over the same
        (id, text) pairs (text "" when a document was added without text)."""
        live = self._digests[: self._n][self.live]
        acc = np.bitwise_xor.reduce(live, axis=0) if len(live) else np.zeros(32, dtype=np.uint8)
        return {"count": int(len(live)), "fingerprint": "sha256:" + bytes(acc).hex()}

    # -- persistence -----------------------------------------------------------------------------
    def save(self, art: ArtifactDir) -> None:
        """Write ``docs.jsonl`` and ``digests.npy`` into the generation being written by ``art``."""

        def write_docs(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for p in range(self._n):
                    doc_id = self.ids[p]
                    if doc_id is None:
                        f.write('{"id": null}\n')
                        continue
                    row: dict[str, Any] = {"id": doc_id, "metadata": self.metadata[p]}
                    if self.texts is not None:
                        row["text"] = self.texts[p]
                    try:
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    except TypeError as exc:
                        raise IndexError_(
                            f"metadata of document {doc_id!r} cannot be saved as JSON ({exc}); "
                            "use str/int/float/bool/None, lists and dicts only"
                        ) from exc

        def write_digests(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, self._digests[: self._n])

        art.write("docs", "docs.jsonl", write_docs)
        art.write("digests", "digests.npy", write_digests)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], manifest: Mapping[str, Any], store_text: bool | None = None
    ) -> DocumentTable:
        """Read the table saved by :meth:`save` in the generation named by ``manifest``."""
        path = Path(path)
        files = manifest.get("files", {})
        if "docs" not in files or "digests" not in files:
            raise ManifestError(f"{path}: the manifest names no 'docs'/'digests' files; the index is damaged")
        has_text = bool(manifest.get("settings", {}).get("store_text", False))
        table = cls(store_text=has_text if store_text is None else (store_text and has_text))
        digests = np.load(path / files["digests"])
        ids: list[str | None] = []
        metas: list[Mapping[str, Any]] = []
        texts: list[str | None] = []
        with open(path / files["docs"], encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                ids.append(row.get("id"))
                metas.append(row.get("metadata") or {})
                texts.append(row.get("text"))
        if len(ids) != len(digests):
            raise ManifestError(
                f"{path}: docs.jsonl has {len(ids)} rows but digests.npy has {len(digests)}; "
                "the index is damaged"
            )
        n = len(ids)
        table.ids = ids
        table.metadata = metas
        if table.texts is not None:
            table.texts = texts
        table._live = np.fromiter((i is not None for i in ids), dtype=bool, count=n)
        table._digests = np.ascontiguousarray(digests, dtype=np.uint8).reshape(n, 32)
        table._n = n
        table.position = {i: p for p, i in enumerate(ids) if i is not None}
        return table
