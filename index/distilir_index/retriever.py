"""What RAG code calls: one object over any saved index, searched one query (or a batch) at a time.

Example::

    from distilir_index.retriever import Retriever

    retriever = Retriever.load("indexes/scifact-dense")          # any kind: dense, sparse, bm25, hybrid
    for hit in retriever.search("what lowers blood pressure?", k=5, filters={"title": {"$exists": True}}):
        print(hit.id, round(hit.score, 3), hit.text[:80], hit.metadata)

``filters`` name metadata fields the documents have (scifact's, indexed by ``distilir-index build``:
``title``); a field none has is a FilterError naming those present (see :mod:`distilir_index.filters`).

A ``Retriever`` adds to an index what callers outside this package need: checked arguments with
errors that say what to do (an empty query, ``k`` out of range, a single string where a list of
queries was meant), one-query and batch entry points, and a description of what is loaded (kind,
document count, encoder, the query side where no model encodes queries, manifest) for logs, the REST
service and adapters.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir_index.base import BaseIndex, Hit, Index, IndexError_, read_manifest

__all__ = ["DEFAULT_MAX_K", "InvalidK", "InvalidQuery", "Retriever"]

#: Largest ``k`` accepted unless a Retriever is given another ``max_k``.
DEFAULT_MAX_K = 1000


class InvalidQuery(IndexError_, ValueError):
    """A query that cannot be searched: not a string, or empty after stripping whitespace."""


class InvalidK(IndexError_, ValueError):
    """``k`` is not an integer in ``1..max_k``."""


#: Index kinds of this package that ``load_index`` may not know yet (registered lazily, by import
#: string, through loading's public ``register_index_kind``; a kind already registered is left alone).
_BUILTIN_KINDS = {
    "sparse": "distilir_index.sparse:SparseIndex",
    "hybrid": "distilir_index.hybrid:HybridIndex",
}


def _check_load_keywords(index_class: type, kind: str, kwargs: Mapping[str, Any]) -> None:
    """Raise TypeError naming the keywords ``index_class.load`` does not take, and those it takes."""
    params = inspect.signature(index_class.load).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        n for n, p in params.items() if n != "path" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"Retriever.load() got {', '.join(f'{n}=' for n in unknown)}, which a {kind!r} index "
            f"({index_class.__name__}.load) does not take; it accepts "
            f"{', '.join(f'{n}=' for n in accepted) or 'no keyword'} (and Retriever.load's own max_k=, "
            "query_encoder=, encoder_options=)."
        )


def _register_builtin_kinds() -> None:
    from distilir_index.loading import register_index_kind, registered_index_kinds

    known = set(registered_index_kinds())
    for kind, target in _BUILTIN_KINDS.items():
        if kind not in known:
            register_index_kind(kind, target)


class Retriever:
    """Searches one index with checked arguments.

    Args:
        index: any object following :class:`distilir_index.base.Index` (BM25Index, DenseIndex,
            SparseIndex, HybridIndex, ...).
        max_k: the largest ``k`` a caller may ask for (default :data:`DEFAULT_MAX_K`).
        path: where the index was loaded from (set by :meth:`load`; shown by :meth:`describe`).
        manifest: the index's manifest.json (set by :meth:`load`).
    """

    def __init__(
        self,
        index: Index,
        *,
        max_k: int = DEFAULT_MAX_K,
        path: str | os.PathLike[str] | None = None,
        manifest: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(index, BaseIndex):
            raise TypeError(
                f"Retriever needs an index (a distilir_index.base.BaseIndex: BM25Index, DenseIndex, ...), "
                f"got {type(index).__name__}. Load one with Retriever.load(path)."
            )
        if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
            raise ValueError(f"max_k must be a positive integer, got {max_k!r}")
        self.index = index
        self.max_k = max_k
        self.path = Path(path) if path is not None else None
        self.manifest = dict(manifest) if manifest is not None else None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        max_k: int = DEFAULT_MAX_K,
        query_encoder: str | os.PathLike[str] | Any = None,
        encoder_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Retriever:
        """Load a saved index of any kind (``distilir_index.loading.load_index`` picks the class
        from manifest.json); ``kwargs`` go to that class's ``load`` (e.g. ``mmap=True``).

        The index's own encoder is the one its manifest names (loaded from that folder, or by that
        name); there is no ``model=``: give ``query_encoder=`` to encode queries with another one.

        Args:
            max_k: the largest ``k`` a caller may ask for (default :data:`DEFAULT_MAX_K`).
            query_encoder: a dense index only: encode queries with this model (folder, hub id,
                packaged name or SentenceTransformer) instead of the index's own encoder, with the
                index's recorded settings (normalisation, max length, prompts). It must be the same
                encoder, or a query-side student trained against an index of the same document
                encoder (its ``query_encoder.json`` says which); anything else raises
                :class:`distilir_index.encoders.EncoderMismatch`. The index's files are not touched.
            encoder_options: a dense index only: runtime options of its query encoder
                (``backend``, ``query_quantization``, ``threads``; see
                :class:`~distilir_index.encoders.DenseEncoder`). Ignored by kinds without one.

        Raises:
            ManifestError: ``path`` is not an index directory.
            ModelNotAvailable: the encoder the index names is not on this machine (then give
                ``query_encoder=`` a folder holding the same model).
            TypeError: a keyword argument that the index's class does not take (named, with those
                it takes).

        Example::

            from distilir_index import Retriever

            retriever = Retriever.load("indexes/scifact-dense")  # its encoder: the one the manifest names
            hits = retriever.search("what lowers blood pressure?", k=5)
            lexical = Retriever.load("indexes/scifact-bm25", max_k=100, mmap=True)  # mmap: BM25Index.load
            # queries encoded by another model (a query-side student of the index's encoder)
            student = Retriever.load("indexes/scifact-dense", query_encoder="runs/qs/model")
            on_torch = Retriever.load("indexes/scifact-dense", encoder_options={"backend": "torch"})
        """
        from distilir_index.loading import INDEXES, load_index
        from distilir_index.models import ModelNotAvailable

        _register_builtin_kinds()
        if "model" in kwargs:
            raise TypeError(
                f"Retriever.load() takes no model= (got model={kwargs['model']!r}): the index's encoder is "
                "the one its manifest names. To encode queries with another model, give "
                "query_encoder= (e.g. Retriever.load(path, query_encoder='runs/qs/model'))."
            )
        manifest = read_manifest(path)  # a clear ManifestError before any model is loaded
        kind = manifest.get("kind")
        if kwargs and kind in INDEXES:
            _check_load_keywords(INDEXES.get(kind), kind, kwargs)
        if query_encoder is not None:
            if kind != "dense" or not manifest.get("encoder"):
                raise IndexError_(
                    f"query_encoder= needs a dense index that records its encoder; {path} is a "
                    f"{kind!r} index. Load it without query_encoder."
                )
        try:
            if query_encoder is not None:
                from distilir_index.encoders import DenseEncoder

                kwargs["encoder"] = DenseEncoder.from_description(
                    manifest["encoder"], model=query_encoder, **dict(encoder_options or {})
                )
            elif encoder_options and kind == "dense" and manifest.get("encoder"):
                from distilir_index.encoders import DenseEncoder

                kwargs["encoder"] = DenseEncoder.from_description(
                    manifest["encoder"], **dict(encoder_options)
                )
            index = load_index(path, **kwargs)
        except ModelNotAvailable as exc:
            if query_encoder is not None or "encoder" in kwargs or kind not in ("dense", "sparse"):
                raise
            name = (manifest.get("encoder") or {}).get("name")
            option = "query_encoder" if kind == "dense" else "encoder"
            raise ModelNotAvailable(
                f"{path}: the {kind} index's encoder {name!r} cannot be loaded on this machine: {exc} "
                f"If the index was built elsewhere, copy that model here and give Retriever.load(path, "
                f"{option}=<its folder>) (distilir-index serve: --query-encoder NAME=FOLDER)."
            ) from exc
        return cls(index, max_k=max_k, path=path, manifest=manifest)

    # -- searching ---------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best hits for one query, best first.

        Args:
            query: the query text (not empty).
            k: how many hits, ``1..max_k``; fewer come back when fewer documents pass ``filters``.
            filters: metadata conditions applied before ranking, e.g. ``{"year": {"$gte": 2020}}``
                (see :mod:`distilir_index.filters`).
            ids: restrict the search to these document ids.
        """
        self.check_query(query, "query")
        return self.search_many([query], k=k, filters=filters, ids=ids)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """Search a batch of queries in one index call (one encoder call for dense/sparse indexes).
        Returns one hit list per query, in order; ``filters`` and ``ids`` apply to every query."""
        if isinstance(queries, str):
            raise InvalidQuery(
                "search_many expects a list of query strings, got a single string; "
                "call search(query) or wrap it in a list"
            )
        queries = list(queries)
        for i, q in enumerate(queries):
            self.check_query(q, f"queries[{i}]")
        self.check_k(k)
        if filters is not None and not isinstance(filters, Mapping):
            from distilir_index.filters import FilterError

            raise FilterError(
                f"filters must be a mapping of metadata field to condition, got {type(filters).__name__}: "
                f"{filters!r}; e.g. {{'year': {{'$gte': 2020}}}}"
            )
        if ids is not None:
            if isinstance(ids, str):
                raise InvalidQuery(
                    "ids must be a list of document ids, got a single string; wrap it in a list"
                )
            ids = [str(i) for i in ids]
        if not queries:
            return []
        results = self.index.search(queries, k=k, filters=filters or None, ids=ids)
        if len(results) != len(queries):  # a broken index must not silently misalign answers
            raise IndexError_(
                f"{type(self.index).__name__}.search returned {len(results)} result lists for "
                f"{len(queries)} queries"
            )
        return [list(r[:k]) for r in results]

    def check_query(self, query: Any, where: str = "query") -> None:
        """Raise InvalidQuery unless ``query`` is a non-blank string (``where`` names it in the message)."""
        if not isinstance(query, str):
            raise InvalidQuery(f"{where} must be a string, got {type(query).__name__}: {query!r}")
        if not query.strip():
            raise InvalidQuery(f"{where} is empty; pass the text to search for")

    def check_k(self, k: Any) -> None:
        """Raise InvalidK unless ``k`` is an int in ``1..max_k``."""
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidK(f"k must be an integer in 1..{self.max_k}, got {type(k).__name__}: {k!r}")
        if not 1 <= k <= self.max_k:
            raise InvalidK(
                f"k must be in 1..{self.max_k}, got {k}; ask for at least one hit"
                + (f" and at most {self.max_k} (raise max_k to allow more)" if k > self.max_k else "")
            )

    # -- what is loaded ----------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.index.kind

    def __len__(self) -> int:
        return len(self.index)

    def _idf_query_side(self) -> Any | None:
        """The IDFQueryEncoder that encodes this index's text queries, or None: a SparseIndex searched
        with ``query_side="idf"`` (distilir_index.idf_query) encodes them without its document model."""
        if self.kind != "sparse":
            return None
        from distilir_index.sparse import SparseIndex  # already imported: the index is one

        if isinstance(self.index, SparseIndex) and self.index.query_side == "idf":
            return self.index.query_encoder
        return None

    @property
    def query_encoder(self) -> Any | None:
        """What encodes text queries: the index's encoder (a DenseEncoder or SparseEncoder), the
        IDFQueryEncoder of an inference-free sparse index (``query_side="idf"``), or None (BM25, hybrid)."""
        idf = self._idf_query_side()
        return idf if idf is not None else self.index.encoder

    def encoder_description(self) -> dict[str, Any] | None:
        """What the index records about its (document) encoder (manifest first, else the live encoder);
        :meth:`query_encoder_description` says what encodes queries."""
        if self.manifest and self.manifest.get("encoder"):
            return dict(self.manifest["encoder"])
        encoder = self.index.encoder
        return dict(encoder.describe()) if encoder is not None else None

    def query_encoder_description(self) -> dict[str, Any] | None:
        """What encodes text queries: for an inference-free sparse index its manifest's ``query_encoder``
        entry (``kind: "idf"``; else the live IDFQueryEncoder's), for every other index the same as
        :meth:`encoder_description` (its encoder encodes queries too)."""
        idf = self._idf_query_side()
        if idf is None:
            return self.encoder_description()
        recorded = (self.manifest or {}).get("query_encoder") or {}
        return dict(recorded) if recorded.get("kind") == idf.kind else dict(idf.describe())

    def describe(self) -> dict[str, Any]:
        """Kind, document count, encoder and a manifest summary (JSON-serialisable). An index whose
        queries are not encoded by ``encoder`` (inference-free sparse: IDF-weighted tokens) also has
        ``query_encoder``, :meth:`query_encoder_description`."""
        manifest = self.manifest or {}
        described: dict[str, Any] = {
            "kind": self.kind,
            "count": len(self),
            "path": str(self.path) if self.path is not None else None,
            "encoder": self.encoder_description(),
        }
        if self._idf_query_side() is not None:
            described["query_encoder"] = self.query_encoder_description()
        described["manifest"] = {
            key: manifest.get(key)
            for key in ("format", "generation", "created", "producer", "settings", "corpus", "components")
            if key in manifest
        }
        return described

    def get_config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_k": self.max_k, "path": str(self.path) if self.path else None}

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"Retriever(kind={self.kind!r}, count={len(self)}{where})"
