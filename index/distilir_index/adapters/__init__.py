"""Adapters that expose a :class:`~distilir_index.retriever.Retriever` to RAG frameworks.

Each adapter needs its framework, installed with an extra; importing one without it raises an
ImportError that names the extra. Import them by name (lazily, so that using one framework does not
require the other)::

    from distilir_index.adapters import DistilirLangChainRetriever    # pip install distilir-index[langchain]
    from distilir_index.adapters import DistilirLlamaIndexRetriever   # pip install distilir-index[llamaindex]
"""

from __future__ import annotations

from typing import Any

__all__ = ["DistilirLangChainRetriever", "DistilirLlamaIndexRetriever"]

_WHERE = {
    "DistilirLangChainRetriever": "distilir_index.adapters.langchain",
    "DistilirLlamaIndexRetriever": "distilir_index.adapters.llamaindex",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
