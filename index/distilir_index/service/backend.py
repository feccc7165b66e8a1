"""The service's state and work, without HTTP: named indexes, a reranker, an embedding encoder.

:class:`Backend` is what the routes call (pyserini's ``server/backend.py`` shape); it is usable on its
own, e.g. in a notebook or another server framework::

    backend = Backend(max_k=100)
    backend.load("scifact", "indexes/scifact-dense")
    name, retriever = backend.resolve(mode="dense")
    hits = backend.search("scifact", "what lowers blood pressure?", k=5)
    backend.reload("scifact")            # re-read the directory (e.g. after a rebuild), swap atomically

Hot reload: the new index is loaded completely (on the caller's thread) while the old one keeps
serving; only then is the registry entry swapped, under a lock. A request that already took the old
:class:`Retriever` finishes on it (Python keeps it alive while referenced), so a reload never fails a
request in flight. Reloads of the same name are serialised.

The reranker is any object with ``score(query, docs) -> list[float]`` (distilir's teachers), a
sentence-transformers ``CrossEncoder`` (``predict`` over pairs), or a plain callable
``(query, docs) -> scores``. The embedding encoder is any object with ``encode_documents`` /
``encode_queries`` (``distilir_index.encoders.DenseEncoder``) or a ``SentenceTransformer``.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from distilir_index.base import GenerationMissing, Hit
from distilir_index.encoders import DenseEncoder
from distilir_index.retriever import DEFAULT_MAX_K, Retriever
from distilir_index.service.errors import (
    BadRequest,
    Conflict,
    IndexChanging,
    InvalidModel,
    NotConfigured,
    UnknownIndex,
    UnknownModel,
)

__all__ = ["Backend", "IndexEntry", "Reranker", "as_embedder", "as_reranker", "load_retriever"]


@runtime_checkable
class Reranker(Protocol):
    """Scores documents for a query; higher is more relevant (the protocol of distilir's teachers)."""

    def score(self, query: str, docs: Sequence[str]) -> list[float]: ...


def as_reranker(obj: Any) -> Callable[[str, Sequence[str]], list[float]]:
    """Adapt a reranker object to ``fn(query, docs) -> list[float]`` (see the module docstring)."""
    if obj is None:
        raise TypeError("no reranker given")
    if callable(getattr(obj, "score", None)):
        return lambda query, docs: [float(s) for s in obj.score(query, list(docs))]
    if callable(getattr(obj, "predict", None)):  # sentence-transformers CrossEncoder
        return lambda query, docs: [
            float(s)
            for s in np.asarray(obj.predict([(query, d) for d in docs], show_progress_bar=False)).ravel()
        ]
    if callable(obj):
        return lambda query, docs: [float(s) for s in obj(query, list(docs))]
    raise TypeError(
        f"a reranker must have score(query, docs) -> list[float], be a sentence-transformers CrossEncoder, "
        f"or be a callable (query, docs) -> scores; got {type(obj).__name__}"
    )


class _Embedder:
    """Uniform view of an embedding encoder: encode(texts, input_type) and a token counter."""

    def __init__(self, obj: Any, name: str) -> None:
        self.obj = obj
        self.name = name
        model = getattr(obj, "model", obj)
        self._tokenizer = getattr(model, "tokenizer", None)
        limit = getattr(model, "max_seq_length", None)
        self._max_length = int(limit) if isinstance(limit, int) and limit > 0 else None

    @property
    def dimension(self) -> int | None:
        dim = getattr(self.obj, "dimension", None)
        if isinstance(dim, int):
            return dim
        get_dim = getattr(self.obj, "get_sentence_embedding_dimension", None)
        return int(get_dim()) if callable(get_dim) and get_dim() else None

    def encode(self, texts: list[str], input_type: str) -> np.ndarray:
        obj = self.obj
        if isinstance(obj, DenseEncoder):
            # client texts never go into the on-disk document cache (it would grow without bound)
            if input_type == "query":
                vectors = obj.encode_queries(texts)
            else:
                vectors = obj.encode_documents(texts, cache=False)
        elif callable(getattr(obj, "encode_queries", None)):
            method = obj.encode_queries if input_type == "query" else obj.encode_documents
            vectors = method(texts)
        elif callable(getattr(obj, "encode", None)):  # a SentenceTransformer
            method = (
                getattr(obj, "encode_query" if input_type == "query" else "encode_document", None)
                or obj.encode
            )
            vectors = method(texts, convert_to_numpy=True, show_progress_bar=False)
        else:
            raise TypeError(f"{type(obj).__name__} has neither encode_queries/encode_documents nor encode")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise TypeError(
                f"the embedding encoder {self.name!r} returned shape {vectors.shape} for "
                f"{len(texts)} texts; expected dense vectors [n, dim]"
            )
        return vectors

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees, cut at its max length as the model cuts them, for OpenAI's
        ``usage``; 0 without a tokenizer."""
        if self._tokenizer is None:
            return 0
        max_length = self._max_length
        try:
            tokenizer, lock = _counting_tokenizer(self._tokenizer)
            with lock:
                encoded = tokenizer(
                    texts, add_special_tokens=True, truncation=max_length is not None, max_length=max_length
                )["input_ids"]
        except Exception:  # noqa: BLE001 - usage is informative; never fail a request over it
            return 0
        return int(sum(len(ids) for ids in encoded))


_COUNTING: weakref.WeakKeyDictionary[Any, tuple[Any, threading.Lock]] = weakref.WeakKeyDictionary()
_COUNTING_LOCK = threading.Lock()


def _counting_tokenizer(tokenizer: Any) -> tuple[Any, threading.Lock]:
    """A private copy of ``tokenizer`` for counting tokens, with its lock. A fast tokenizer keeps its
    truncation and padding settings as state: counting with other settings on the model's own
    tokenizer, while another thread encodes with it, broke that thread's batch (found by the soak:
    "Unable to create tensor ... activate truncation and/or padding", a 500)."""
    with _COUNTING_LOCK:
        found = _COUNTING.get(tokenizer)
        if found is None:
            found = _COUNTING[tokenizer] = (copy.deepcopy(tokenizer), threading.Lock())
        return found


def as_embedder(obj: Any, name: str) -> _Embedder:
    if not (callable(getattr(obj, "encode_queries", None)) or callable(getattr(obj, "encode", None))):
        raise TypeError(
            f"an embedding encoder needs encode_queries/encode_documents (DenseEncoder) or encode "
            f"(SentenceTransformer); got {type(obj).__name__}"
        )
    return _Embedder(obj, name)


def load_retriever(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    max_k: int = DEFAULT_MAX_K,
    encoder_options: Mapping[str, Any] | None = None,
    reuse_encoder: Any = None,
) -> Retriever:
    """Load an index directory as a Retriever.

    ``model`` (a hub id, folder or packaged name) replaces the query encoder the manifest names,
    keeping the recorded normalisation, max length and prompts; the index then checks that it
    matches the one it was built with and raises EncoderMismatch otherwise (e.g. a quantised copy
    of the same weights passes only if its fingerprint is the same). Only dense and sparse indexes
    have a query encoder. ``encoder_options`` (``backend``, ``query_quantization``, ``threads``) are
    the runtime options of a dense index's query encoder.
    """
    if model is None and reuse_encoder is not None:
        # A reload of an index whose query encoder is unchanged keeps the loaded one: loading the
        # same model again on every reload grew the server's memory (glibc rarely returns the freed
        # weights to the system; the soak measured ~60 MB per reload) and cost seconds.
        from distilir_index.encoders import EncoderMismatch

        try:
            return Retriever.load(path, max_k=max_k, encoder=reuse_encoder)
        except (EncoderMismatch, TypeError):
            pass  # another encoder (or a kind that takes none): load the one the manifest names
    if model is None:
        return Retriever.load(path, max_k=max_k, encoder_options=encoder_options)
    from distilir_index.base import read_manifest

    manifest = read_manifest(path)
    kind = manifest.get("kind")
    recorded = dict(manifest.get("encoder") or {})
    options = {
        "normalize": recorded.get("normalize", True),
        "max_length": recorded.get("max_length"),
        "query_prompt": recorded.get("query_prompt", ""),
        "document_prompt": recorded.get("document_prompt", ""),
    }
    if kind not in ("dense", "sparse"):
        raise BadRequest(
            f"{path} holds a {kind!r} index, which has no query encoder to replace; drop `model`"
        )
    try:
        if kind == "dense":
            from distilir_index.encoders import DenseEncoder

            encoder: Any = DenseEncoder(model, **options, **dict(encoder_options or {}))
        else:
            from distilir_index.sparse_encoder import SparseEncoder

            encoder = SparseEncoder(
                model,
                max_length=options["max_length"],
                max_active_dims=recorded.get("max_active_dims"),
                min_weight=recorded.get("min_weight", 0.0),
                query_prompt=options["query_prompt"],
                document_prompt=options["document_prompt"],
            )
    except Exception as exc:  # noqa: BLE001 - any failure to load a named model is the caller's to fix
        raise InvalidModel(
            f"cannot load the query encoder {model!r} ({type(exc).__name__}: {str(exc)[:300]}); "
            "name a local folder, a packaged name or a reachable hub id"
        ) from exc
    return Retriever.load(path, max_k=max_k, encoder=encoder)


def _check_readable_dir(path: Path) -> None:
    """Turn a path the OS cannot even look at (NUL byte, name too long, no permission) into a 400;
    a missing directory is left to read_manifest, whose ManifestError says what to do."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read the path {str(path)[:200]!r}: {exc}") from exc


@dataclass
class IndexEntry:
    """One named index: what serves it now and where it came from."""

    name: str
    retriever: Retriever
    path: Path | None = None
    model: str | None = None
    loaded_at: float = field(default_factory=time.time)


class Backend:
    """Named indexes with atomic reload, plus an optional reranker and embedding encoder.

    Args:
        max_k: largest ``k`` of retrievers this backend loads.
        reranker: see :func:`as_reranker`; ``reranker_name`` is what responses report.
        embedder: an encoder for :meth:`embed`; ``embedder_name`` is the name clients use.
        loader: ``loader(path, model=..., max_k=...) -> Retriever`` (default :func:`load_retriever`).
    """

    def __init__(
        self,
        *,
        max_k: int = DEFAULT_MAX_K,
        reranker: Any = None,
        reranker_name: str | None = None,
        embedder: Any = None,
        embedder_name: str | None = None,
        loader: Callable[..., Retriever] = load_retriever,
    ) -> None:
        self.max_k = max_k
        self._loader = loader
        self._entries: dict[str, IndexEntry] = {}
        self._lock = threading.Lock()
        self._reload_locks: dict[str, threading.Lock] = {}
        self.ready = False
        self.reranker_name: str | None = None
        self._rerank: Callable[[str, Sequence[str]], list[float]] | None = None
        self._embedder: _Embedder | None = None
        if reranker is not None:
            self.set_reranker(reranker, reranker_name)
        if embedder is not None:
            self.set_embedder(embedder, embedder_name)

    # -- components --------------------------------------------------------------------------------

    def set_reranker(self, reranker: Any, name: str | None = None) -> None:
        self._rerank = as_reranker(reranker)
        self.reranker_name = name or getattr(reranker, "name", None) or type(reranker).__name__

    def set_embedder(self, embedder: Any, name: str | None = None) -> None:
        self._embedder = as_embedder(
            embedder, name or getattr(embedder, "name", None) or type(embedder).__name__
        )

    @property
    def embedder_name(self) -> str | None:
        return self._embedder.name if self._embedder is not None else None

    # -- the registry ------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        retriever: Retriever,
        *,
        path: str | os.PathLike[str] | None = None,
        model: str | None = None,
    ) -> None:
        """Register (or replace) an index under ``name``."""
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"index names must be non-empty strings without '/', got {name!r}")
        if not isinstance(retriever, Retriever):
            retriever = Retriever(retriever, max_k=self.max_k)
        where = Path(path) if path is not None else retriever.path
        with self._lock:
            self._entries[name] = IndexEntry(name, retriever, where, model)

    def load(self, name: str, path: str | os.PathLike[str], *, model: str | None = None) -> Retriever:
        """Load the index in ``path`` and register it as ``name`` (replacing one of that name)."""
        retriever = self._loader(path, model=model, max_k=self.max_k)
        self.add(name, retriever, path=path, model=model)
        return retriever

    def reload(
        self, name: str, *, path: str | os.PathLike[str] | None = None, model: str | None = None
    ) -> tuple[IndexEntry, IndexEntry]:
        """Load ``name`` again (from ``path``/with ``model`` when given, else as before), then swap.
        Returns ``(old, new)`` entries. On any error the old index keeps serving."""
        old = self.entry(name)
        with self._lock:
            reload_lock = self._reload_locks.setdefault(name, threading.Lock())
        with reload_lock:
            old = self.entry(name)
            source = Path(path) if path is not None else old.path
            if source is None:
                raise BadRequest(
                    f"index {name!r} was registered in memory, without a path; name a path to reload it from"
                )
            use_model = model if model is not None else old.model
            if path is not None:
                _check_readable_dir(source)
            reuse = old.retriever.query_encoder if model is None and old.retriever.kind == "dense" else None
            retriever = self._load_settled(source, use_model, reuse_encoder=reuse)  # slow part, unlocked
            if retriever.kind != old.retriever.kind:
                raise Conflict(
                    f"index {name!r} is a {old.retriever.kind!r} index; the reload found a "
                    f"{retriever.kind!r} one, and clients that asked for {name!r} would silently get "
                    "another kind of search. Serve it under another name (restart with it configured)."
                )
            new = IndexEntry(name, retriever, source, use_model)
            with self._lock:
                self._entries[name] = new
        return old, new

    def _load_settled(
        self, source: Path, model: str | None, attempts: int = 5, reuse_encoder: Any = None
    ) -> Retriever:
        """Load ``source``, reading it again when a file vanished under the reader: a rebuild of the
        same folder replaced the generation the manifest named (saves are atomic, so the next read
        finds the new one). Still vanishing after ``attempts`` reads: a retryable 503."""
        for attempt in range(attempts):
            try:
                extra = {"reuse_encoder": reuse_encoder} if reuse_encoder is not None else {}
                return self._loader(source, model=model, max_k=self.max_k, **extra)
            except (FileNotFoundError, GenerationMissing) as exc:
                if not source.exists():
                    raise
                last = exc
                time.sleep(0.05 * (attempt + 1))
        raise IndexChanging(
            f"the index at {source.name!r} kept changing while it was read ({attempts} reads; last: "
            f"{type(last).__name__}: {str(last)[:200]}); a rebuild is writing it. Retry when it is done.",
            headers={"Retry-After": "1"},
        )

    def entry(self, name: str) -> IndexEntry:
        with self._lock:
            entry = self._entries.get(name)
            names = list(self._entries)
        if entry is None:
            raise UnknownIndex(f"no index named {name!r}; loaded indexes: {names}. See GET /v1/indexes.")
        return entry

    def get(self, name: str) -> Retriever:
        return self.entry(name).retriever

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, name: str | None = None, mode: str | None = None) -> tuple[str, Retriever]:
        """Pick the index a request means: by ``name``; else the first of kind ``mode``; else the
        first registered (the default)."""
        if name is not None:
            retriever = self.get(name)
            if mode is not None and retriever.kind != mode:
                raise BadRequest(
                    f"index {name!r} is a {retriever.kind!r} index but mode {mode!r} was asked for; "
                    "drop `mode`, or name an index of that kind (GET /v1/indexes)"
                )
            return name, retriever
        with self._lock:
            entries = list(self._entries.values())
        if not entries:
            raise UnknownIndex("no index is loaded on this server; configure `indexes` and restart")
        if mode is None:
            return entries[0].name, entries[0].retriever
        for entry in entries:
            if entry.retriever.kind == mode:
                return entry.name, entry.retriever
        kinds = {e.name: e.retriever.kind for e in entries}
        raise UnknownIndex(f"no loaded index of kind {mode!r}; loaded: {kinds}")

    def info(self, name: str) -> dict[str, Any]:
        entry = self.entry(name)
        described = entry.retriever.describe()
        described["path"] = str(entry.path) if entry.path is not None else described.get("path")
        names = self.names
        return {"name": name, "default": bool(names) and names[0] == name, **described}

    # -- work --------------------------------------------------------------------------------------

    def search(
        self,
        name: str | None,
        query: str,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> list[Hit]:
        _, retriever = self.resolve(name, mode)
        return retriever.search(query, k=k, filters=filters, ids=ids)

    def embedder_for(self, model: str | None) -> _Embedder:
        """The configured embedding encoder, or the query encoder of the dense index named ``model``
        (or of the first dense index when neither ``model`` nor a configured encoder is given)."""
        if self._embedder is not None and (model is None or model == self._embedder.name):
            return self._embedder
        with self._lock:
            entries = list(self._entries.values())
        candidates = [
            e for e in entries if e.retriever.kind == "dense" and e.retriever.query_encoder is not None
        ]
        if model is None:
            if candidates:
                return _Embedder(candidates[0].retriever.query_encoder, candidates[0].name)
            raise NotConfigured(
                "this server has no embedding model: start it with `embedding_model` set, "
                "or load a dense index"
            )
        for e in candidates:
            if e.name == model:
                return _Embedder(e.retriever.query_encoder, e.name)
        choices = ([self._embedder.name] if self._embedder else []) + [e.name for e in candidates]
        raise UnknownModel(f"no embedding model {model!r} on this server; available: {choices}")

    def embed(
        self, texts: Sequence[str], *, model: str | None = None, input_type: str = "document"
    ) -> tuple[np.ndarray, str, int]:
        """Vectors for ``texts``: ``(float32 [n, dim], model name, token count)``."""
        if input_type not in ("query", "document"):
            raise BadRequest(f"input_type must be 'query' or 'document', got {input_type!r}")
        embedder = self.embedder_for(model)
        texts = list(texts)
        return embedder.encode(texts, input_type), embedder.name, embedder.count_tokens(texts)

    def rerank(self, query: str, documents: Sequence[str], *, model: str | None = None) -> list[float]:
        """The reranker's score for each document, in input order."""
        if self._rerank is None:
            raise NotConfigured("this server has no rerank model: start it with `rerank_model` set")
        if model is not None and model != self.reranker_name:
            raise UnknownModel(
                f"no rerank model {model!r} on this server; available: [{self.reranker_name!r}]"
            )
        scores = self._rerank(query, list(documents))
        if len(scores) != len(documents):
            raise RuntimeError(f"the reranker returned {len(scores)} scores for {len(documents)} documents")
        return scores

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "max_k": self.max_k,
            "indexes": {n: str(e.path) if (e := self.entry(n)).path else None for n in self.names},
            "reranker": self.reranker_name,
            "embedder": self.embedder_name,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "indexes": {n: self.info(n) for n in self.names},
            "reranker": self.reranker_name,
            "embedder": self.embedder_name,
            "ready": self.ready,
        }
