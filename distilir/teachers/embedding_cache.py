"""What the embedding teachers (bi-encoder, SPLADE) share: their query and document caches and the
batched ``score_many`` loop.

A teacher sees the same documents again and again: a document is a candidate of many queries, a
store scores in batches of queries, and the same corpus is scored again for another candidate depth,
another split or as a member of an ensemble. Document embeddings go through the machine's one
embedding cache per model (:mod:`distilir_index.embedding_cache`, the cache the index builds use):
keyed by the model's weights fingerprint and document settings and by the sha256 of each text, so a
document is encoded once per model on a machine, whether an index build, a teacher or an evaluation
asked first. Query embeddings are cached in memory for the teacher's lifetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distilir_index.embedding_cache import (
    EmbeddingCache,
    EmbeddingCacheError,
    SparseVector,
    open_document_cache,
    resolve_cache_dir,
)

from distilir.teachers.base import TeacherError, check_lists

__all__ = ["EmbeddingCache", "EmbeddingTeacherMixin", "SparseVector", "resolve_cache_dir"]


class EmbeddingTeacherMixin:
    """What the bi-encoder and SPLADE teachers share: query/document caches (documents on disk in the
    shared per-model cache unless ``cache_dir`` is None) and the batched ``score_many`` loop. A
    subclass sets ``cache_kind``, ``num_threads`` and ``cache_dir``, and implements
    ``_document_cache_settings``, ``_encode_queries``, ``_encode_documents`` and
    ``_similarities(query_embedding, document_embeddings)``."""

    cache_kind = "dense"
    cache_dir: Path | None = None
    num_threads: int | None = None
    _doc_cache: EmbeddingCache | None = None
    _query_cache: EmbeddingCache | None = None

    @property
    def doc_cache(self) -> EmbeddingCache:
        if self._doc_cache is None:
            settings = self._document_cache_settings()
            try:
                cache = None
                if self.cache_dir is not None:
                    cache = open_document_cache(
                        **settings,
                        kind=self.cache_kind,
                        root=self.cache_dir,
                        identity=self.get_config_dict(),  # type: ignore[attr-defined]
                    )
            except EmbeddingCacheError as exc:
                raise TeacherError(str(exc)) from exc
            self._doc_cache = cache if cache is not None else EmbeddingCache(kind=self.cache_kind)
        return self._doc_cache

    def _document_cache_settings(self) -> dict[str, Any]:
        """What changes this teacher's document vectors: ``fingerprint`` (weights), ``max_length``,
        ``prompt`` (document prompt) and ``normalize``, the key of its folder in the shared cache."""
        raise NotImplementedError  # pragma: no cover - abstract

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
