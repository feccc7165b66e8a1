"""One embedding cache per model: document embeddings keyed by the model's weights fingerprint, its
document-side settings and the sha256 of each text, shared by index builds, the embedding teachers
and evaluation, so that no corpus is encoded twice by the same model on one machine.

Who uses it: :class:`~distilir_index.encoders.DenseEncoder` (``encode_documents``: every dense index
build, flat or HNSW or IVF-PQ, and every student evaluated over a rebuilt index) and
``distilir.teachers.BiEncoderTeacher`` / ``SPLADETeacher`` (their document embeddings). The folder
of a model is :func:`document_cache_key` of what changes a document's vector — weights fingerprint,
maximum length, document prompt, normalisation — so the bi-encoder teacher all-MiniLM-L6-v2 (cosine)
and a normalised all-MiniLM-L6-v2 index share one folder, and an index built again with another FAISS
factory encodes nothing. The inference backend (torch or ONNX Runtime, within 1e-5) is not part of
the key.

Where: ``$DISTILIR_EMBEDDING_CACHE``, else ``$DISTILIR_CACHE/embeddings`` (``~/.cache/distilir/
embeddings``); ``DISTILIR_EMBEDDING_CACHE=off`` keeps embeddings in memory only. A folder is read
whole into memory when first opened (float32, one row per distinct text: 1.5 KB per document at 384
dimensions), which suits corpora up to a few million documents; turn it off for larger builds.
Written by hand because the encoders' libraries cache nothing between calls.

On-disk layout (one folder per key)::

    DIR/cache.json            {"format": 1, "kind": "dense"|"sparse", "teacher": {...identity...}}
    DIR/part-<uuid>.npz       keys (U16) + dense: vectors[n, dim] | sparse: indptr, indices, values

Each encode call that had misses adds one part, written to a temporary name and renamed, so a killed
process leaves whole parts only (at most the call in flight is lost). Parts are read once, when the
cache is opened; a part that cannot be read is reported and skipped (its texts are encoded again),
never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EmbeddingCache",
    "EmbeddingCacheError",
    "SparseVector",
    "document_cache_key",
    "open_document_cache",
    "resolve_cache_dir",
    "text_hash",
]

#: a sparse embedding: (sorted unique vocabulary ids int64, weights float32)
SparseVector = tuple[np.ndarray, np.ndarray]

_FORMAT = 1
_OFF = ("off", "none", "0", "false")


class EmbeddingCacheError(ValueError):
    """A cache folder that cannot be used as asked; the message says what to do."""


def text_hash(text: str) -> str:
    """First 16 hex characters of sha256(UTF-8 text): the key of a text in the embedding caches (and
    the text part of teacher score-store keys). 64 bits: a collision among a few million texts has
    probability < 1e-6."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The root of the embedding caches: ``cache_dir`` when given, else ``$DISTILIR_EMBEDDING_CACHE``,
    else ``$DISTILIR_CACHE/embeddings``. ``"off"`` (argument or variable): None, memory only."""
    if cache_dir is None:
        env = os.environ.get("DISTILIR_EMBEDDING_CACHE")
        if env is not None and env.strip().lower() in ("", *_OFF):
            return None
        if env:
            cache_dir = env
        else:
            from distilir_index.models import cache_dir as root

            return root() / "embeddings"
    if str(cache_dir).strip().lower() in _OFF:
        return None
    return Path(cache_dir).expanduser()


def document_cache_key(
    fingerprint: str, *, max_length: int | None, prompt: str | None, normalize: bool, kind: str = "dense"
) -> str:
    """The folder name of a model's document embeddings: what changes a document's vector (weights,
    truncation, document prompt, normalisation, dense or sparse) and nothing else."""
    payload = [kind, fingerprint, max_length, prompt or "", bool(normalize)]
    return f"{kind}-" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def open_document_cache(
    fingerprint: str | None,
    *,
    max_length: int | None,
    prompt: str | None,
    normalize: bool,
    kind: str = "dense",
    root: str | os.PathLike[str] | None = None,
    identity: Mapping[str, Any] | None = None,
) -> EmbeddingCache | None:
    """The on-disk document cache of a model (None when caching is off or the model has no
    fingerprint, e.g. one held only in memory)."""
    base = resolve_cache_dir(root)
    if base is None or not fingerprint:
        return None
    key = document_cache_key(
        fingerprint, max_length=max_length, prompt=prompt, normalize=normalize, kind=kind
    )
    return EmbeddingCache(base / key, kind=kind, identity=dict(identity or {}))


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
            raise EmbeddingCacheError(f"kind must be 'dense' or 'sparse', got {kind!r}")
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
                raise EmbeddingCacheError(f"encoder returned {len(encoded)} embeddings for {len(todo)} texts")
            new = dict(zip(todo.keys(), encoded, strict=True))
            if self.directory is not None:
                self._write_part(new)
            self._store.update(new)
        return [self._store[k] for k in keys]

    def put(self, texts: Sequence[str], embeddings: Sequence[Any]) -> int:
        """Add embeddings computed elsewhere (e.g. the vectors of an index built by the same model);
        texts already cached are left as they are. Returns how many were added (one part on disk)."""
        if len(texts) != len(embeddings):
            raise EmbeddingCacheError(f"got {len(texts)} texts but {len(embeddings)} embeddings")
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
                raise EmbeddingCacheError(
                    f"{self.directory} holds a {meta.get('kind')!r} embedding cache (format "
                    f"{meta.get('format')}), but a {self.kind!r} one (format {_FORMAT}) was asked for; "
                    "point the encoder at another cache folder"
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
