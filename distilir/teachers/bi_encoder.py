"""Bi-encoder teacher: a sentence-transformers embedding model scoring by cosine or inner product.

``score(q, d) = sim(E_q(q), E_d(d))`` with ``sim`` the cosine ``<u, v> / (|u| |v|)`` (default when
the model declares it, e.g. all-mpnet-base-v2) or the plain inner product ``<u, v>``. Queries are
encoded with ``SentenceTransformer.encode_query`` and documents with ``encode_document``, so the
prompts a model was trained with (e.g. ``"query: "`` / ``"passage: "``) are applied.

A teacher sees the same documents again and again (a document is a candidate of many queries, and a
store scores in batches of queries), so document and query embeddings are cached by the sha256 of
their text for the lifetime of the teacher: every distinct text is encoded once. ``clear_cache()``
drops them. A strong bi-encoder is a cheap teacher for a small one (e.g. all-mpnet-base-v2 → MiniLM);
it is also a member of the default offline ensemble.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir.teachers.base import (
    BaseTeacher,
    TeacherError,
    describe_model,
    state_dict_fingerprint,
    text_hash,
)
from distilir.teachers.cross_encoder import torch_threads

__all__ = ["BiEncoderTeacher", "EmbeddingCache"]

_SIMILARITIES = ("cosine", "dot")


class EmbeddingCache:
    """Embeddings keyed by the sha256 (16 hex) of their text; ``get_or_encode`` encodes only misses,
    all of them in one call, so each distinct text is encoded once per teacher lifetime."""

    def __init__(self) -> None:
        self._store: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
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
            encoded = encode(list(todo.values()))
            if len(encoded) != len(todo):
                raise TeacherError(f"encoder returned {len(encoded)} embeddings for {len(todo)} texts")
            self._store.update(zip(todo.keys(), encoded, strict=True))
        return [self._store[k] for k in keys]


class BiEncoderTeacher(BaseTeacher):
    """Scores documents by the similarity of sentence-transformers embeddings.

    Args:
        model: hub id, local folder, packaged name (``"all-mpnet-base-v2"``, ``"all-MiniLM-L6-v2"``,
            see ``distilir_index.models.resolve_model``) or a built ``SentenceTransformer``.
        similarity: ``"cosine"`` or ``"dot"``; ``None`` takes the model's declared
            ``similarity_fn_name`` (``"cosine"`` when it declares none).
        batch_size: texts per forward pass.
        max_length: truncate texts to this many tokens (``None``: the model's ``max_seq_length``).
        device: torch device (``None``: sentence-transformers picks).
        num_threads: torch threads while encoding (``None``: ``sensible_threads()``, the free cores).
            Runtime only.
        show_progress: tqdm bars while encoding.
    """

    score_type = "similarity"

    def __init__(
        self,
        model: Any = "all-mpnet-base-v2",
        similarity: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        *,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> None:
        if similarity is not None and similarity not in _SIMILARITIES:
            raise TeacherError(f"similarity must be one of {_SIMILARITIES} or None, got {similarity!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TeacherError(f"batch_size must be a positive int, got {batch_size!r}; try 32")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise TeacherError(f"max_length must be an int >= 8 or None, got {max_length!r}")
        self._model, self._identity = _load_sentence_transformer(model, device=device)
        if max_length is not None:
            self._model.max_seq_length = max_length
        declared = getattr(self._model, "similarity_fn_name", None)
        if similarity is None:
            similarity = "dot" if str(declared) == "dot" else "cosine"
        self.similarity = similarity
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.name = f"bi-encoder:{self._identity['name'] or 'in-memory'}"
        self.doc_cache = EmbeddingCache()
        self.query_cache = EmbeddingCache()

    @property
    def model(self) -> Any:
        return self._model

    def clear_cache(self) -> None:
        self.doc_cache.clear()
        self.query_cache.clear()

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        return self.score_many([query], [docs])[0]

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        if len(queries) != len(docs):
            raise TeacherError(
                f"got {len(queries)} queries but {len(docs)} document lists; one list per query"
            )
        with torch_threads(self.num_threads):
            q_emb = self.query_cache.get_or_encode(list(queries), self._encode_queries)
            flat = [d for ds in docs for d in ds]
            d_emb = self.doc_cache.get_or_encode(flat, self._encode_documents)
        out, start = [], 0
        for q, ds in zip(q_emb, docs, strict=True):
            block = np.asarray(d_emb[start : start + len(ds)], dtype=np.float32).reshape(len(ds), -1)
            out.append((block @ q).astype(np.float64).tolist())
            start += len(ds)
        return out

    def _encode(self, method: str, texts: list[str]) -> np.ndarray:
        emb = getattr(self._model, method)(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.similarity == "cosine",
            show_progress_bar=self.show_progress,
        )
        return np.asarray(emb, dtype=np.float32)

    def _encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._encode("encode_query", texts))

    def _encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return list(self._encode("encode_document", texts))

    def get_config_dict(self) -> dict[str, Any]:
        prompts = getattr(self._model, "prompts", None) or {}
        return {
            "kind": "bi-encoder",
            "model": self._identity,
            "similarity": self.similarity,
            "max_length": int(self._model.max_seq_length) if self._model.max_seq_length else None,
            "prompts": {k: v for k, v in sorted(prompts.items()) if v},
            "dtype": str(next(self._model.parameters()).dtype).removeprefix("torch."),
            "score_type": self.score_type,
        }


def _load_sentence_transformer(model: Any, *, device: str | None) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        if device is not None:
            model.to(device)
        return model, {
            "name": None,
            "path": None,
            "fingerprint": state_dict_fingerprint(model),
            "revision": None,
        }
    if not isinstance(model, (str, os.PathLike)):
        raise TeacherError(
            f"model must be a hub id, a folder or a SentenceTransformer, got {type(model).__name__}; "
            "e.g. BiEncoderTeacher('all-mpnet-base-v2')"
        )
    from distilir_index.models import resolve_model

    name = str(model)
    resolved = resolve_model(name)
    local = Path(resolved).is_dir()
    st = SentenceTransformer(resolved, device=device, local_files_only=local)
    return st, describe_model(name, resolved if local else None, st)
