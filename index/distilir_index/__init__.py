"""distilir-index: the serving index of distilir (dense FAISS, sparse inverted, BM25, hybrid fusion,
the Retriever API and a REST service). Never imports `distilir`.

Index classes are imported lazily (``distilir_index.BM25Index`` etc.), so importing the package
pulls in neither FAISS nor torch."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from distilir_index.base import (
    FORMAT,
    ArtifactDir,
    BaseIndex,
    CorpusFingerprint,
    Hit,
    Index,
    IndexError_,
    ManifestError,
    read_manifest,
)

__version__ = "0.1.0"

_LAZY = {
    "load_index": "distilir_index.loading",
    "make_index": "distilir_index.loading",
    "INDEXES": "distilir_index.loading",
    "Registry": "distilir_index.registry",
    "register_index_kind": "distilir_index.loading",
    "BM25Index": "distilir_index.bm25",
    "DenseIndex": "distilir_index.dense",
    "SparseIndex": "distilir_index.sparse",
    "HybridIndex": "distilir_index.hybrid",
    "DenseEncoder": "distilir_index.encoders",
    "SparseEncoder": "distilir_index.sparse_encoder",
    "IDFQueryEncoder": "distilir_index.idf_query",
    "EncoderMismatch": "distilir_index.encoders",
    "Retriever": "distilir_index.retriever",
    "resolve_model": "distilir_index.models",
}

__all__ = [
    "FORMAT",
    "INDEXES",
    "ArtifactDir",
    "BM25Index",
    "BaseIndex",
    "CorpusFingerprint",
    "DenseEncoder",
    "DenseIndex",
    "EncoderMismatch",
    "Hit",
    "HybridIndex",
    "IDFQueryEncoder",
    "Index",
    "IndexError_",
    "ManifestError",
    "Registry",
    "Retriever",
    "SparseEncoder",
    "SparseIndex",
    "__version__",
    "load_index",
    "make_index",
    "read_manifest",
    "register_index_kind",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'distilir_index' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
