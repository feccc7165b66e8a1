"""LlamaIndex retriever over a distilir index.

Example::

    from distilir_index.adapters.llamaindex import DistilirLlamaIndexRetriever

    retriever = DistilirLlamaIndexRetriever.from_path("indexes/scifact-dense", k=5)
    nodes = retriever.retrieve("what lowers blood pressure?")
    nodes[0].node.text, nodes[0].node.node_id, nodes[0].score

Each hit becomes ``NodeWithScore(node=TextNode(id_=hit.id, text=hit.text, metadata=hit.metadata),
score=hit.score)``; it plugs into LlamaIndex query engines like any other retriever.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "DistilirLlamaIndexRetriever needs llama-index-core, which is not installed: "
        "pip install 'distilir-index[llamaindex]'"
    ) from exc

from distilir_index.base import Hit
from distilir_index.retriever import Retriever

__all__ = ["DistilirLlamaIndexRetriever", "hit_to_node"]


def hit_to_node(hit: Hit) -> NodeWithScore:
    node = TextNode(id_=hit.id, text=hit.text or "", metadata=dict(hit.metadata or {}))
    return NodeWithScore(node=node, score=float(hit.score))


class DistilirLlamaIndexRetriever(BaseRetriever):
    """A LlamaIndex ``BaseRetriever`` that searches a distilir :class:`Retriever`.

    Args:
        retriever: the distilir Retriever (or any index, wrapped in one).
        k: hits per query.
        filters: metadata filter applied to every query (see distilir_index.filters).
        **kwargs: LlamaIndex BaseRetriever arguments (callback_manager, verbose, ...).
    """

    def __init__(
        self, retriever: Retriever | Any, *, k: int = 10, filters: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.retriever = retriever if isinstance(retriever, Retriever) else Retriever(retriever)
        self.retriever.check_k(k)
        self.k = k
        self.filters = filters
        super().__init__(**kwargs)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        k: int = 10,
        filters: dict[str, Any] | None = None,
        **load_kwargs: Any,
    ) -> DistilirLlamaIndexRetriever:
        """Load the index saved in ``path`` (any kind) and wrap it."""
        return cls(Retriever.load(path, **load_kwargs), k=k, filters=filters)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.retriever.search(query_bundle.query_str, k=self.k, filters=self.filters)
        return [hit_to_node(h) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Search is blocking (encoder forward pass, FAISS): keep it off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)
