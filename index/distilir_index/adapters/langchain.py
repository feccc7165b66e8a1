"""LangChain retriever over a distilir index.

Example::

    from distilir_index.adapters.langchain import DistilirLangChainRetriever

    retriever = DistilirLangChainRetriever.from_path("indexes/scifact-dense", k=5)
    docs = retriever.invoke("what lowers blood pressure?")
    docs[0].page_content, docs[0].metadata["id"], docs[0].metadata["score"]

Each hit becomes ``Document(page_content=hit.text, id=hit.id, metadata={"id", "score", **hit.metadata})``
(``id`` and ``score`` win over metadata fields of the same name).
"""

from __future__ import annotations

import os
from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "DistilirLangChainRetriever needs langchain-core, which is not installed: "
        "pip install 'distilir-index[langchain]'"
    ) from exc

from pydantic import Field, field_validator

from distilir_index.base import Hit
from distilir_index.retriever import DEFAULT_MAX_K, Retriever

__all__ = ["DistilirLangChainRetriever", "hit_to_document"]


def hit_to_document(hit: Hit) -> Document:
    metadata = {**dict(hit.metadata or {}), "id": hit.id, "score": float(hit.score)}
    return Document(page_content=hit.text or "", id=hit.id, metadata=metadata)


class DistilirLangChainRetriever(BaseRetriever):
    """A LangChain ``BaseRetriever`` that searches a distilir :class:`Retriever`.

    Attributes:
        retriever: the distilir Retriever (or any index, wrapped in one).
        k: hits per query.
        filters: metadata filter applied to every query (see distilir_index.filters).
    """

    retriever: Retriever
    k: int = Field(10, ge=1, le=DEFAULT_MAX_K)
    filters: dict[str, Any] | None = None

    @field_validator("retriever", mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Retriever:
        return value if isinstance(value, Retriever) else Retriever(value)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        k: int = 10,
        filters: dict[str, Any] | None = None,
        **load_kwargs: Any,
    ) -> DistilirLangChainRetriever:
        """Load the index saved in ``path`` (any kind) and wrap it."""
        return cls(retriever=Retriever.load(path, **load_kwargs), k=k, filters=filters)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.retriever.search(query, k=self.k, filters=self.filters)
        return [hit_to_document(h) for h in hits]
