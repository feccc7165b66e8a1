"""Text-embedding caches shared by the embedding teachers (bi-encoder, SPLADE).

A teacher sees the same documents again and again: a document is a candidate of many queries, a
store scores in batches of queries, and the same corpus is scored again for another candidate depth,
another split or as a member of an ensemble. :class:`EmbeddingCache` keys embeddings by the sha256 of
their text so every distinct text is encoded once per teacher lifetime; with ``directory`` set it
also keeps them on disk, so every distinct text is encoded once per *teacher fingerprint* across
processes (re-ranking the test split and scoring the train split of a corpus share one encoding
pass). Written by hand because the encoders' libraries cache nothing between calls.

On-disk layout (one folder per teacher fingerprint, chosen by the teacher)::

    DIR/cache.json            {"format": 1, "kind": "dense"|"sparse", "teacher": {...config...}}
    DIR/part-<uuid>.npz       keys (U16) + dense: vectors[n, dim] | sparse: indptr, indices, values

Each encode call that had misses adds one part, written to a temporary name and renamed, so a killed
process leaves whole parts only (at most the call in flight is lost). Parts are read once, when the
cache is opened; a part that cannot be read is reported and skipped (its texts are encoded again),
never deleted.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir.teachers.base import TeacherError, check_lists, text_hash

__all__ = ["EmbeddingCache", "EmbeddingTeacherMixin", "SparseVector", "resolve_cache_dir"]

#: a sparse embedding: (sorted unique vocabulary ids int64, weights float32)
SparseVector = tuple[np.ndarray, np.ndarray]

_FORMAT = 1


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """``cache_dir`` as a path; ``None`` falls back to ``$DISTILIR_EMBEDDING_CACHE`` (unset or empty:
    memory only)."""
    if cache_dir is None:
        cache_dir = os.environ.get("DISTILIR_EMBEDDING_CACHE") or None
    return Path(cache_dir).expanduser() if cache_dir is not None else None


class EmbeddingCache:
    """Embeddings keyed by the sha256 (16 hex) of their text; ``get_or_encode`` encodes only misses,
    all of them in one call.

    Args:
        directory: keep the embeddings in this folder too (created; see the module docstring).
            ``None``: memory only.
        kind: ``"dense"`` (1-d float arrays) or ``"sparse"`` (:data:`SparseVector`); checked against
            a folder written before.
        identity: JSON-able description of the encoder, written to ``cache.json`` when the folder is
            created (for people reading the folder; the folder name is what keys it).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        kind: str = "dense",
        identity: dict[str, Any] | None = None,
    ) -> None:
        if kind not in ("dense", "sparse"):
            raise TeacherError(f"kind must be 'dense' or 'sparse', got {kind!r}")
        self.kind = kind
        self.directory = Path(directory) if directory is not None else None
        self._store: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0
        self.loaded = 0
        if self.directory is not None:
            self._open(identity or {})

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk are kept)."""
        self._store.clear()

    def get_or_encode(self, texts: Sequence[str], encode: Callable[[list[str]], Sequence[Any]]) -> list[Any]:
        keys = [text_hash(t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._store and key not in todo:
                todo[key] = text
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            encoded = list(encode(list(todo.values())))
            if len(encoded) != len(todo):
                raise TeacherError(f"encoder returned {len(encoded)} embeddings for {len(todo)} texts")
            new = dict(zip(todo.keys(), encoded, strict=True))
            if self.directory is not None:
                self._write_part(new)
            self._store.update(new)
        return [self._store[k] for k in keys]

    def put(self, texts: Sequence[str], embeddings: Sequence[Any]) -> int:
        """Add embeddings computed elsewhere (e.g. the vectors of an index built by the same model);
        texts already cached are left as they are. Returns how many were added (one part on disk)."""
        if len(texts) != len(embeddings):
            raise TeacherError(f"got {len(texts)} texts but {len(embeddings)} embeddings")
        new = {}
        for text, emb in zip(texts, embeddings, strict=True):
            key = text_hash(text)
            if key not in self._store and key not in new:
                new[key] = emb
        if new:
            if self.directory is not None:
                self._write_part(new)
            self._store.update(new)
        return len(new)

    # --- persistence ------------------------------------------------------------------------------

    def _open(self, identity: dict[str, Any]) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        meta_path = self.directory / "cache.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("kind") != self.kind or meta.get("format") != _FORMAT:
                raise TeacherError(
                    f"{self.directory} holds a {meta.get('kind')!r} embedding cache (format "
                    f"{meta.get('format')}), but a {self.kind!r} one (format {_FORMAT}) was asked for; "
                    "point the teacher at another cache folder"
                )
        else:
            tmp = meta_path.with_suffix(f".tmp-{uuid.uuid4().hex}")
            tmp.write_text(
                json.dumps(
                    {"format": _FORMAT, "kind": self.kind, "teacher": identity}, indent=1, default=str
                ),
                encoding="utf-8",
            )
            os.replace(tmp, meta_path)
        for part in sorted(self.directory.glob("part-*.npz")):
            try:
                self._read_part(part)
            except Exception as exc:  # a torn or foreign file: skip it, its texts get re-encoded
                warnings.warn(f"skipping unreadable embedding-cache part {part}: {exc}", stacklevel=3)
        self.loaded = len(self._store)

    def _read_part(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            keys = [str(k) for k in z["keys"]]
            if self.kind == "dense":
                vectors = np.asarray(z["vectors"], dtype=np.float32)
                self._store.update(zip(keys, vectors, strict=True))
            else:
                indptr, indices, values = z["indptr"], z["indices"], z["values"]
                for i, key in enumerate(keys):
                    a, b = int(indptr[i]), int(indptr[i + 1])
                    self._store[key] = (indices[a:b].astype(np.int64), values[a:b].astype(np.float32))

    def _write_part(self, entries: dict[str, Any]) -> None:
        assert self.directory is not None
        keys = np.asarray(list(entries), dtype="U16")
        if self.kind == "dense":
            arrays = {"vectors": np.stack([np.asarray(v, dtype=np.float32) for v in entries.values()])}
        else:
            lengths = [len(idx) for idx, _ in entries.values()]
            arrays = {
                "indptr": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                "indices": np.concatenate([idx for idx, _ in entries.values()]).astype(np.int32),
                "values": np.concatenate([val for _, val in entries.values()]).astype(np.float32),
            }
        name = f"part-{uuid.uuid4().hex}"
        tmp = self.directory / f".{name}.tmp.npz"
        np.savez(tmp, keys=keys, **arrays)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / f"{name}.npz")


class EmbeddingTeacherMixin:
    """What the bi-encoder and SPLADE teachers share: query/document caches (documents optionally on
    disk under ``cache_dir/<fingerprint>``) and the batched ``score_many`` loop. A subclass sets
    ``cache_kind``, ``num_threads`` and ``cache_dir``, and implements ``_encode_queries``,
    ``_encode_documents`` and ``_similarities(query_embedding, document_embeddings)``."""

    cache_kind = "dense"
    cache_dir: Path | None = None
    num_threads: int | None = None
    _doc_cache: EmbeddingCache | None = None
    _query_cache: EmbeddingCache | None = None

    @property
    def doc_cache(self) -> EmbeddingCache:
        if self._doc_cache is None:
            directory = None
            if self.cache_dir is not None:
                directory = Path(self.cache_dir) / self.fingerprint  # type: ignore[attr-defined]
            self._doc_cache = EmbeddingCache(
                directory,
                kind=self.cache_kind,
                identity=self.get_config_dict(),  # type: ignore[attr-defined]
            )
        return self._doc_cache

    @property
    def query_cache(self) -> EmbeddingCache:
        if self._query_cache is None:
            self._query_cache = EmbeddingCache(kind=self.cache_kind)
        return self._query_cache

    def clear_cache(self) -> None:
        """Drop the in-memory embeddings (an on-disk document cache is kept and re-read on next use)."""
        self._doc_cache = None
        self._query_cache = None

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        from distilir.teachers.cross_encoder import torch_threads

        check_lists(queries, docs)
        with torch_threads(self.num_threads):
            q_emb = self.query_cache.get_or_encode(list(queries), self._encode_queries)
            d_emb = self.doc_cache.get_or_encode([d for ds in docs for d in ds], self._encode_documents)
        out, start = [], 0
        for q, ds in zip(q_emb, docs, strict=True):
            out.append(self._similarities(q, d_emb[start : start + len(ds)]))
            start += len(ds)
        return out

    def _encode_queries(self, texts: list[str]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_documents(self, texts: list[str]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _similarities(self, query: Any, docs: Sequence[Any]) -> list[float]:  # pragma: no cover
        raise NotImplementedError
