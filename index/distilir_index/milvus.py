"""Milvus as a serving backend: export dense and/or sparse indexes to one Milvus collection and
search it behind the Index protocol (dense, sparse, or hybrid with reciprocal rank fusion).

One collection holds, per document: ``pk`` (VARCHAR primary key = the document id), ``dense``
(FLOAT_VECTOR, when a dense part exists), ``sparse`` (SPARSE_FLOAT_VECTOR, when a sparse part
exists), ``text`` (VARCHAR, when texts are stored) and the document metadata as dynamic fields (so
filters run inside Milvus). Sparse terms are stored as uint32 column ids of a vocabulary kept in the
manifest folder (``vocabulary.json``) -- the sparse encoder's vocabulary when one is attached.

The same client code serves both deployments, chosen by the ``uri`` of ``pymilvus.MilvusClient``:

* a local file path (``"indexes/scifact.db"``) -> **Milvus Lite**, embedded Milvus from PyPI
  (``pip install "pymilvus[milvus_lite]"``); one process at a time may open the file;
* ``"http://host:19530"`` -> a Milvus standalone/distributed server (``token=`` for auth).

Search: ``mode="dense"`` searches the FLOAT_VECTOR field (metric IP; index FLAT, HNSW or
AUTOINDEX), ``"sparse"`` the SPARSE_FLOAT_VECTOR field (SPARSE_INVERTED_INDEX, metric IP: the exact
dot product), ``"hybrid"`` both with ``MilvusClient.hybrid_search`` -- one ``AnnSearchRequest`` per
field, each fetching ``depth`` hits, fused by ``RRFRanker(k)``::

    rrf(d) = sum_fields 1 / (k + rank_field(d))     rank = 1, 2, ...; k = 60 (same as HybridIndex)

which is the fusion :class:`~distilir_index.hybrid.HybridIndex` computes (ties may be ordered
differently: HybridIndex breaks them by document id, Milvus by its internal order).

Filters: our mapping syntax (distilir_index.filters: ``{"year": {"$gte": 2018}}``, lists as ``$in``)
is translated to a Milvus boolean expression over the dynamic fields (``year >= 2018``); ``$exists``
is not translatable and raises. A raw Milvus expression string is accepted too.

Tested with pymilvus 3.0.2 / milvus-lite 3.2.2. Limitations of Milvus Lite we rely on knowing:
single-process access to the ``.db`` file; small-scale use (the Milvus docs recommend a server
beyond a few million vectors); index types are the subset Lite implements (FLAT, IVF_FLAT and HNSW
in 3.x -- HNSW is a real graph there: recall@10 0.994 on SciFact MiniLM vectors, see
benchmarks/reports/milvus.md; ``describe()`` records what the server reports); no partitions, users
or roles. Sparse search (SPARSE_INVERTED_INDEX), hybrid_search + RRFRanker and filters on dynamic
fields all work in Milvus Lite 3.2.2 (tests/distilir_index/test_milvus.py).

The manifest (kind ``"milvus"``) records what was exported from where: the source indexes'
manifests (``source``), the encoders' descriptions, the collection name, the URI and the index
parameters; ``MilvusIndex.load(path)`` reconnects to the collection it names.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.base import (
    ArtifactDir,
    BaseIndex,
    CorpusFingerprint,
    Hit,
    IndexError_,
    ManifestError,
    read_manifest,
)

__all__ = ["MilvusIndex", "to_milvus_filter"]

_INSTALL = 'install the Milvus backend with `pip install "distilir-index[milvus]"` (pymilvus + milvus-lite)'
_RESERVED = ("pk", "dense", "sparse", "text")
_DENSE_INDEXES = ("FLAT", "HNSW", "AUTOINDEX", "IVF_FLAT")
_MODES = ("auto", "dense", "sparse", "hybrid")
_OPS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_BATCH = 1000
_MAX_TEXT = 65_535


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise ImportError(f"pymilvus is not installed: {_INSTALL}") from exc
    return pymilvus


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise IndexError_(f"cannot filter on a non-finite number {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # double-quoted, escaped
    raise IndexError_(
        f"filter values must be str, int, float or bool to run in Milvus, got {type(value).__name__}: "
        f"{value!r}"
    )


def _field(name: Any) -> str:
    name = str(name)
    if not name.isidentifier():
        raise IndexError_(
            f"metadata field {name!r} cannot be filtered in Milvus; field names must be identifiers (a-z, "
            "0-9, _)"
        )
    return name


def to_milvus_filter(spec: Mapping[str, Any] | str | None, ids: Iterable[str] | None = None) -> str:
    """Translate a distilir filter mapping (and/or an id list) into a Milvus boolean expression.

    ``{"year": {"$gte": 2018, "$lt": 2021}, "lang": ["en", "de"]}`` ->
    ``(year >= 2018 and year < 2021) and (lang in ["en", "de"])``. A string is taken as a Milvus
    expression already. Returns "" when nothing restricts."""
    parts: list[str] = []
    if isinstance(spec, str):
        if spec.strip():
            parts.append(f"({spec})")
    elif spec is not None:
        if not isinstance(spec, Mapping):
            raise IndexError_(
                f"a filter must be a mapping of metadata field to condition (or a Milvus expression string), "
                f"got {type(spec).__name__}: {spec!r}"
            )
        for name, cond in spec.items():
            field = _field(name)
            if field in _RESERVED:
                raise IndexError_(f"{field!r} is a reserved field of the Milvus collection, not metadata")
            if isinstance(cond, (list, tuple, set, frozenset)):
                cond = {"$in": list(cond)}
            if not isinstance(cond, Mapping):
                cond = {"$eq": cond}
            clauses = []
            for op, operand in cond.items():
                if op in _OPS:
                    clauses.append(f"{field} {_OPS[op]} {_literal(operand)}")
                elif op in ("$in", "$nin"):
                    if not isinstance(operand, (list, tuple, set, frozenset)):
                        raise IndexError_(f"{op} on field {field!r} needs a list, got {operand!r}")
                    values = ", ".join(_literal(v) for v in operand)
                    clauses.append(f"{field} {'in' if op == '$in' else 'not in'} [{values}]")
                else:
                    raise IndexError_(
                        f"filter operator {op!r} on field {field!r} has no Milvus translation; use one of "
                        f"{sorted([*_OPS, '$in', '$nin'])}, or pass a Milvus expression string"
                    )
            if clauses:
                parts.append("(" + " and ".join(clauses) + ")")
    if ids is not None:
        if isinstance(ids, str):
            raise IndexError_("ids must be a list of document ids, got a single string; wrap it in a list")
        parts.append("(pk in [" + ", ".join(_literal(str(i)) for i in ids) + "])")
    return " and ".join(parts)


class MilvusIndex(BaseIndex):
    """A Milvus collection (Lite file or server) behind the Index protocol.

    Args:
        uri: a local ``.db`` file (Milvus Lite) or ``http(s)://host:port`` (a server).
        collection: collection name (letters, digits, underscores; starts with a letter or _).
        dimension: size of the dense field; None for no dense field (taken from ``dense_encoder``).
        sparse: whether the collection has a sparse field (True when ``sparse_encoder`` is given).
        dense_encoder / sparse_encoder: encode string queries (and texts on ``add``); optional.
        dense_index: "FLAT" (exact, default), "HNSW", "AUTOINDEX" or "IVF_FLAT".
        hnsw_m / ef_construction / ef_search: HNSW parameters (defaults 32, 200, 64).
        rrf_k: RRF constant of hybrid search (default 60); depth: hits per field before fusion (100).
        store_text: store texts in a VARCHAR field so hits carry them (default True).
        overwrite: drop an existing collection of that name (default False: open it, if its fields fit).
        token: auth token for a server.

    Example::

        index = MilvusIndex.export("indexes/scifact.db", "scifact", dense=dense_index, sparse=splade_index)
        index.search(["what lowers blood pressure?"], k=10, mode="hybrid", filters={"year": {"$gte": 2015}})
        index.save("indexes/scifact-milvus")      # manifest; load_index() reconnects
    """

    kind = "milvus"
    help = "dense and/or sparse vectors in Milvus Lite or a Milvus server"

    def __init__(
        self,
        uri: str | os.PathLike[str],
        collection: str,
        *,
        dimension: int | None = None,
        sparse: bool | None = None,
        dense_encoder: Any = None,
        sparse_encoder: Any = None,
        dense_index: str = "FLAT",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 64,
        rrf_k: float = 60,
        depth: int = 100,
        store_text: bool = True,
        overwrite: bool = False,
        token: str | None = None,
        vocabulary: Sequence[str] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        pymilvus = _pymilvus()
        uri = os.fspath(uri)
        if not isinstance(collection, str) or not collection or not collection.replace("_", "a").isalnum():
            raise ValueError(
                f"collection must be a name of letters, digits and underscores, got {collection!r}"
            )
        if dense_index not in _DENSE_INDEXES:
            raise ValueError(f"dense_index must be one of {_DENSE_INDEXES}, got {dense_index!r}")
        for name, value in (
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("depth", depth),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float)) or rrf_k < 0:
            raise ValueError(f"rrf_k must be a number >= 0 (60 in Cormack et al.), got {rrf_k!r}")
        if dense_encoder is not None:
            if dimension is not None and dimension != dense_encoder.dimension:
                raise ValueError(
                    f"dimension={dimension} but the dense encoder gives {dense_encoder.dimension}-d vectors"
                )
            dimension = dense_encoder.dimension
        if sparse_encoder is not None:
            sparse = True
            vocabulary = list(sparse_encoder.vocabulary)
        if dimension is not None and (
            isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1
        ):
            raise ValueError(f"dimension must be a positive int or None, got {dimension!r}")
        if dimension is None and not sparse:
            raise ValueError(
                "a MilvusIndex needs a dense field (dimension=, dense_encoder=), a sparse one "
                "(sparse=True), or both"
            )
        local = "://" not in uri
        if local:
            uri = str(Path(uri).resolve())
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri, self.collection, self.local = uri, collection, local
        self.dimension, self.sparse = dimension, bool(sparse)
        self.dense_encoder, self.sparse_encoder = dense_encoder, sparse_encoder
        self.dense_index, self.hnsw_m, self.ef_construction, self.ef_search = (
            dense_index,
            hnsw_m,
            ef_construction,
            ef_search,
        )
        self.rrf_k, self.depth, self.store_text = float(rrf_k), depth, bool(store_text)
        self.source = dict(source) if source else {}
        self._terms: list[str] = list(vocabulary) if vocabulary is not None else []
        self._vocab = {t: i for i, t in enumerate(self._terms)}
        self._fingerprint = CorpusFingerprint()
        self._lock = threading.RLock()
        try:
            self.client = pymilvus.MilvusClient(uri=uri, token=token or "")
        except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException and others
            raise IndexError_(
                f"could not connect to Milvus at {uri!r} ({exc}); for Milvus Lite pass a file path"
            ) from exc
        if overwrite and self.client.has_collection(collection):
            self.client.drop_collection(collection)
        if self.client.has_collection(collection):
            self._check_existing()
        else:
            self._create()
        self.client.load_collection(collection)

    # -- schema --------------------------------------------------------------------------------------
    def _create(self) -> None:
        DataType = _pymilvus().DataType  # noqa: N806 - pymilvus' enum
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=512)
        params = self.client.prepare_index_params()
        if self.dimension is not None:
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
            extra = (
                {"M": self.hnsw_m, "efConstruction": self.ef_construction}
                if self.dense_index == "HNSW"
                else {}
            )
            params.add_index(field_name="dense", index_type=self.dense_index, metric_type="IP", params=extra)
        if self.sparse:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        if self.store_text:
            schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT)
        self.client.create_collection(self.collection, schema=schema, index_params=params)

    def _check_existing(self) -> None:
        fields = {f["name"]: f for f in self.client.describe_collection(self.collection)["fields"]}
        want = (
            {"pk"}
            | ({"dense"} if self.dimension is not None else set())
            | ({"sparse"} if self.sparse else set())
        )
        if not want <= set(fields):
            raise IndexError_(
                f"collection {self.collection!r} at {self.uri} has fields {sorted(fields)}, expected "
                f"{sorted(want)}; "
                "pass overwrite=True to replace it, or another collection name"
            )
        if self.dimension is not None:
            dim = int(fields["dense"].get("params", {}).get("dim", self.dimension))
            if dim != self.dimension:
                raise IndexError_(
                    f"collection {self.collection!r} holds {dim}-d vectors, not {self.dimension}-d"
                )
        self.store_text = self.store_text and "text" in fields

    # -- description -------------------------------------------------------------------------------
    def __len__(self) -> int:
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def __repr__(self) -> str:
        return f"MilvusIndex(uri={self.uri!r}, collection={self.collection!r}, docs={len(self)})"

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "collection": self.collection,
            "dimension": self.dimension,
            "sparse": self.sparse,
            "dense_index": self.dense_index,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rrf_k": self.rrf_k,
            "depth": self.depth,
            "store_text": self.store_text,
        }

    def describe(self) -> dict[str, Any]:
        import pymilvus

        settings = self.get_config_dict()
        indexes = {}
        for name in self.client.list_indexes(self.collection):
            info = self.client.describe_index(self.collection, name)
            indexes[name] = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))}
        try:
            from importlib.metadata import version

            lite = version("milvus-lite")
        except Exception:  # noqa: BLE001 - milvus-lite absent when serving from a server
            lite = None
        settings.update(
            {
                "server_indexes": indexes,
                "library": {"name": "pymilvus", "version": pymilvus.__version__, "milvus_lite": lite},
                "deployment": "milvus-lite" if self.local else "server",
            }
        )
        encoder = {
            "dense": self.dense_encoder.describe() if self.dense_encoder is not None else None,
            "sparse": self.sparse_encoder.describe() if self.sparse_encoder is not None else None,
        }
        return {"kind": self.kind, "settings": settings, "encoder": encoder, "corpus": self._corpus()}

    def _corpus(self) -> dict[str, Any]:
        return {
            "count": len(self),
            "fingerprint_of_exported": self._fingerprint.hexdigest() if self._fingerprint.count else None,
        }

    # -- writes ------------------------------------------------------------------------------------
    def _sparse_row(self, weights: Mapping[str, float], grow: bool, what: str) -> dict[int, float]:
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"{what} must be a mapping of term to weight, got {type(weights).__name__}: {weights!r}"
            )
        out: dict[int, float] = {}
        for term, value in weights.items():
            v = float(value)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{what}[{term!r}] = {value!r}: sparse weights must be finite and >= 0")
            col = self._vocab.get(term)
            if col is None and grow:
                if self.sparse_encoder is not None:
                    raise ValueError(f"{what}: term {term!r} is not in the sparse encoder's vocabulary")
                col = self._vocab[term] = len(self._terms)
                self._terms.append(term)
            if col is not None and v > 0:
                out[col] = out.get(col, 0.0) + v
        return out

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        vectors: np.ndarray | None = None,
        weights: Sequence[Mapping[str, float]] | None = None,
        show_progress: bool | None = None,
    ) -> None:
        """Insert documents: dense ``vectors`` [n, d] and/or sparse ``weights`` ({term: weight} per id),
        else encoded from ``texts`` with the attached encoders. Ids already present are overwritten
        (Milvus upsert)."""
        from tqdm.auto import tqdm

        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of document ids, got a single string; wrap it in a list")
        ids = [str(i) for i in ids]
        n = len(ids)
        if len(set(ids)) != n:
            raise ValueError("document ids must be unique within a batch")
        if texts is not None and len(texts) != n:
            raise ValueError(f"got {n} ids but {len(texts)} texts; pass one text per id")
        metas = [dict(m or {}) for m in (metadata if metadata is not None else [None] * n)]
        if len(metas) != n:
            raise ValueError(f"got {n} ids but {len(metas)} metadata entries; pass one per id")
        for m in metas:
            clash = set(m) & set(_RESERVED)
            if clash:
                raise ValueError(
                    f"metadata fields {sorted(clash)} are reserved in the Milvus collection; rename them"
                )
        if self.dimension is not None:
            if vectors is None:
                if texts is None or self.dense_encoder is None:
                    raise ValueError(
                        "this collection has a dense field: pass vectors=[n, d] or texts with a dense_encoder"
                    )
                vectors = self.dense_encoder.encode_documents(list(texts))
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape != (n, self.dimension):
                raise ValueError(f"vectors must have shape ({n}, {self.dimension}), got {vectors.shape}")
            if not np.isfinite(vectors).all():
                raise ValueError("vectors contain NaN or infinite values")
        elif vectors is not None:
            raise ValueError("this collection has no dense field; build it with dimension= to store vectors")
        if self.sparse:
            if weights is None:
                if texts is None or self.sparse_encoder is None:
                    raise ValueError(
                        "this collection has a sparse field: pass weights=[{term: w}, ...] or texts with a "
                        "sparse_encoder"
                    )
                weights = self.sparse_encoder.encode_documents(list(texts))
            if isinstance(weights, Mapping) or len(weights) != n:
                raise ValueError(
                    f"got {n} ids but not {n} weight dicts; pass weights=[{{term: weight}}, ...], one per id"
                )
        elif weights is not None:
            raise ValueError(
                "this collection has no sparse field; build it with sparse=True to store weights"
            )
        rows = []
        with self._lock:
            for i in range(n):
                row: dict[str, Any] = {"pk": ids[i], **metas[i]}
                if vectors is not None:
                    row["dense"] = vectors[i].tolist()
                if weights is not None:
                    sparse_row = self._sparse_row(weights[i], grow=True, what=f"weights[{i}]")
                    row["sparse"] = sparse_row or {0: 0.0}  # Milvus rejects an empty sparse row
                if self.store_text:
                    text = texts[i] if texts is not None else ""
                    if len(text.encode("utf-8")) > _MAX_TEXT:
                        text = text.encode("utf-8")[:_MAX_TEXT].decode("utf-8", "ignore")
                    row["text"] = text
                rows.append(row)
                self._fingerprint.update(ids[i], texts[i] if texts is not None else "")
            show = n >= 10_000 if show_progress is None else show_progress
            for s in tqdm(range(0, n, _BATCH), desc="milvus insert", disable=not show):
                self.client.upsert(self.collection, rows[s : s + _BATCH])

    def delete(self, ids: Iterable[str]) -> int:
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of document ids, got a single string; wrap it in a list")
        ids = [str(i) for i in ids]
        if not ids:
            return 0
        present = self.client.get(self.collection, ids=ids, output_fields=["pk"])
        self.client.delete(self.collection, ids=ids)
        return len(present)

    @classmethod
    def export(
        cls,
        uri: str | os.PathLike[str],
        collection: str,
        *,
        dense: Any = None,
        sparse: Any = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> MilvusIndex:
        """Export a DenseIndex and/or a SparseIndex holding the same documents into one collection.

        Vectors, sparse weights, texts and metadata are copied as stored (no re-encoding); the
        indexes' encoders are attached for string queries, and their manifests recorded as ``source``.
        kwargs go to the constructor (``dense_index="HNSW"``, ``overwrite=True``, ...)."""
        if dense is None and sparse is None:
            raise ValueError("export needs dense=DenseIndex and/or sparse=SparseIndex")
        base = dense if dense is not None else sparse
        docs = base._docs  # the shared DocumentTable (same package, same bookkeeping)
        positions = np.flatnonzero(docs.live).astype(np.int64)
        ids = [docs.ids[p] for p in positions]
        vectors = None
        if dense is not None:
            vectors = dense._vectors_at(positions)
        weights = None
        source = {}
        if sparse is not None:
            matrix = sparse.document_matrix()
            terms = sparse.vocabulary
            row_of = {d: p for p, d in enumerate(sparse.document_ids()) if d is not None}
            missing = [i for i in ids if i not in row_of]
            if missing or len(row_of) != len(ids):
                raise ValueError(
                    f"the dense and sparse indexes hold different documents (e.g. {missing[:3]}); export "
                    "them "
                    "separately into two collections"
                )
            weights = []
            for i in ids:
                r = row_of[i]
                lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
                weights.append(
                    {
                        terms[c]: float(v)
                        for c, v in zip(matrix.indices[lo:hi], matrix.data[lo:hi], strict=True)
                    }
                )
            source["sparse"] = sparse.describe()
        if dense is not None:
            source["dense"] = dense.describe()
        texts = [docs.texts[p] or "" for p in positions] if docs.texts is not None else None
        metas = [docs.metadata[p] for p in positions]
        sparse_encoder = sparse.encoder if sparse is not None else None
        index = cls(
            uri,
            collection,
            dimension=dense.dimension if dense is not None else None,
            sparse=sparse is not None,
            dense_encoder=dense.encoder if dense is not None else None,
            sparse_encoder=sparse_encoder,
            store_text=kwargs.pop("store_text", texts is not None),
            vocabulary=None
            if sparse_encoder is not None
            else (sparse.vocabulary if sparse is not None else None),
            source=source,
            **kwargs,
        )
        index.add(ids, texts, metadata=metas, vectors=vectors, weights=weights, show_progress=show_progress)
        return index

    # -- search ------------------------------------------------------------------------------------
    def _encode(
        self, queries: Any, mode: str
    ) -> tuple[str, np.ndarray | None, list[dict[int, float]] | None]:
        """Resolve the mode and the query representations for each field it needs."""
        if isinstance(queries, np.ndarray):
            if mode not in ("auto", "dense"):
                raise ValueError(
                    f"query vectors search the dense field only; mode={mode!r} needs query strings"
                )
            if self.dimension is None:
                raise ValueError("this collection has no dense field to search with vectors")
            x = np.asarray(queries, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != self.dimension:
                raise ValueError(f"query vectors must have shape [n, {self.dimension}], got {x.shape}")
            return "dense", x, None
        if isinstance(queries, (str, bytes, Mapping)):
            raise TypeError(
                "queries must be a list (of strings or {term: weight} dicts) or an [n, d] array; wrap it "
                "in a list"
            )
        queries = list(queries)
        if queries and all(isinstance(q, Mapping) for q in queries):
            if mode not in ("auto", "sparse"):
                raise ValueError(
                    f"{{term: weight}} queries search the sparse field only; mode={mode!r} needs strings"
                )
            if not self.sparse:
                raise ValueError("this collection has no sparse field to search with {term: weight} queries")
            return (
                "sparse",
                None,
                [self._sparse_row(q, grow=False, what=f"queries[{i}]") for i, q in enumerate(queries)],
            )
        if not all(isinstance(q, str) for q in queries):
            raise TypeError("queries must be all strings, all {term: weight} dicts, or one [n, d] array")
        if mode == "auto" and self.dense_encoder is None and self.sparse_encoder is None:
            raise ValueError(
                "query strings need an encoder: build/load the index with dense_encoder= and/or "
                "sparse_encoder=, "
                "or pass an [n, d] array of query vectors or {term: weight} dicts"
            )
        if mode == "auto":
            mode = (
                "hybrid"
                if self.dense_encoder is not None and self.sparse_encoder is not None
                else ("dense" if self.dense_encoder is not None else "sparse")
            )
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        dense_q = sparse_q = None
        if mode in ("dense", "hybrid"):
            if self.dense_encoder is None:
                raise ValueError(f"mode={mode!r} with query strings needs a dense_encoder (or pass vectors)")
            dense_q = np.asarray(self.dense_encoder.encode_queries(queries), dtype=np.float32)
        if mode in ("sparse", "hybrid"):
            if self.sparse_encoder is None:
                raise ValueError(
                    f"mode={mode!r} with query strings needs a sparse_encoder (or pass {{term: weight}} "
                    "dicts)"
                )
            sparse_q = [
                self._sparse_row(w, grow=False, what="query")
                for w in self.sparse_encoder.encode_queries(queries)
            ]
        return mode, dense_q, sparse_q

    def _dense_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.dense_index == "HNSW":
            params["params"] = {"ef": self.ef_search}
        return params

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        filters: Mapping[str, Any] | str | None = None,
        ids: Iterable[str] | None = None,
        mode: str = "auto",
        depth: int | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first.

        Args:
            queries: query strings (encoded with the attached encoders), an [n, d] float array (dense
                field), or ``{term: weight}`` dicts (sparse field).
            mode: "auto" (hybrid when both encoders are attached), "dense", "sparse" or "hybrid".
            filters / ids: pre-filter inside Milvus (see :func:`to_milvus_filter`).
            depth: hybrid only -- hits fetched per field before RRF (default: the index's ``depth``,
                at least ``k``).
        Scores: inner product (dense), dot product (sparse), RRF score (hybrid).
        """
        k = self.check_k(k)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        mode, dense_q, sparse_q = self._encode(queries, mode)
        return self.search_vectors(
            dense_q, sparse_q, int(k), filters=filters, ids=ids, mode=mode, depth=depth
        )

    def search_vectors(
        self,
        dense: np.ndarray | None,
        sparse: Sequence[Mapping[int, float]] | None,
        k: int,
        *,
        filters: Mapping[str, Any] | str | None = None,
        ids: Iterable[str] | None = None,
        mode: str = "hybrid",
        depth: int | None = None,
    ) -> list[list[Hit]]:
        """Search with already encoded queries: ``dense`` [n, d] and/or ``sparse`` (column -> weight
        rows, columns of :attr:`vocabulary`)."""
        pymilvus = _pymilvus()
        expr = to_milvus_filter(filters, list(ids) if ids is not None else None)
        out_fields = ["text", "$meta"] if self.store_text else ["$meta"]
        n = len(dense) if dense is not None else len(sparse or [])
        if n == 0:
            return []
        # Milvus rejects an empty sparse query row; such a query matches nothing.
        empty = [i for i in range(n) if sparse is not None and not sparse[i]]
        sparse_rows = [dict(s) if s else {0: 0.0} for s in sparse] if sparse is not None else None
        with self._lock:
            if mode == "dense":
                res = self.client.search(
                    self.collection,
                    data=dense.tolist(),
                    anns_field="dense",
                    limit=k,
                    filter=expr,  # type: ignore[union-attr]
                    output_fields=out_fields,
                    search_params=self._dense_params(),
                )
            elif mode == "sparse":
                res = self.client.search(
                    self.collection,
                    data=sparse_rows,
                    anns_field="sparse",
                    limit=k,
                    filter=expr,
                    output_fields=out_fields,
                    search_params={"metric_type": "IP"},
                )
            else:
                if dense is None or sparse is None or not self.sparse or self.dimension is None:
                    raise ValueError(
                        "hybrid search needs a collection with both fields and both query representations"
                    )
                depth = max(self.depth if depth is None else depth, k)
                res = []
                for i in range(n):  # hybrid_search takes one query per request list
                    reqs = [
                        pymilvus.AnnSearchRequest(
                            data=[dense[i].tolist()],
                            anns_field="dense",
                            param=self._dense_params(),
                            limit=depth,
                            expr=expr or None,
                        ),
                        pymilvus.AnnSearchRequest(
                            data=[sparse_rows[i]],
                            anns_field="sparse",  # type: ignore[index]
                            param={"metric_type": "IP"},
                            limit=depth,
                            expr=expr or None,
                        ),
                    ]
                    if i in empty:
                        reqs = reqs[:1]
                    got = self.client.hybrid_search(
                        self.collection,
                        reqs,
                        pymilvus.RRFRanker(self.rrf_k),
                        limit=k,
                        output_fields=out_fields,
                    )
                    res.append(got[0])
        hits = [
            [self._hit(r) for r in row if not (mode == "sparse" and i in empty)] for i, row in enumerate(res)
        ]
        if mode == "sparse":  # like SparseIndex with no filler: only documents sharing a term (score > 0)
            hits = [[h for h in row if h.score > 0] for row in hits]
        return hits

    def _hit(self, r: Mapping[str, Any]) -> Hit:
        entity = dict(r.get("entity") or {})
        text = entity.pop("text", None) if self.store_text else None
        for name in ("pk", "dense", "sparse"):
            entity.pop(name, None)
        return Hit(id=str(r.get("pk", r.get("id"))), score=float(r["distance"]), text=text, metadata=entity)

    @property
    def vocabulary(self) -> list[str]:
        """The term of each sparse column id (a copy)."""
        return list(self._terms)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a manifest folder naming the collection (the data stays in Milvus) with the sparse
        vocabulary and the source indexes' manifests."""
        self.client.flush(self.collection)
        described = self.describe()
        terms = list(self._terms)
        with ArtifactDir(path, kind=self.kind) as art:
            art.write(
                "vocabulary",
                "vocabulary.json",
                lambda tmp: tmp.write_text(json.dumps(terms, ensure_ascii=False), "utf-8"),
            )
            art.commit(
                settings=described["settings"],
                corpus=described["corpus"],
                encoder=described["encoder"],
                extra={"source": self.source},
            )
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        uri: str | None = None,
        token: str | None = None,
        load_encoders: bool = True,
        **kwargs: Any,
    ) -> MilvusIndex:
        """Reconnect to the collection a manifest names (``uri`` overrides where Milvus runs)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        s = manifest.get("settings") or {}
        enc = manifest.get("encoder") or {}
        dense_encoder = sparse_encoder = None
        if load_encoders and enc.get("dense"):
            from distilir_index.encoders import DenseEncoder

            dense_encoder = DenseEncoder.from_description(enc["dense"])
        if load_encoders and enc.get("sparse"):
            from distilir_index.sparse_encoder import SparseEncoder

            sparse_encoder = SparseEncoder.from_description(enc["sparse"])
        terms = json.loads((path / manifest["files"]["vocabulary"]).read_text(encoding="utf-8"))
        target = uri or s["uri"]
        if "://" not in target and not Path(target).exists():
            raise ManifestError(
                f"{path} names the Milvus Lite file {target}, which does not exist; pass uri="
            )
        index = cls(
            target,
            s["collection"],
            dimension=s.get("dimension"),
            sparse=s.get("sparse"),
            dense_encoder=dense_encoder,
            sparse_encoder=sparse_encoder,
            dense_index=s.get("dense_index", "FLAT"),
            hnsw_m=s.get("hnsw_m", 32),
            ef_construction=s.get("ef_construction", 200),
            ef_search=s.get("ef_search", 64),
            rrf_k=s.get("rrf_k", 60),
            depth=s.get("depth", 100),
            store_text=s.get("store_text", True),
            token=token,
            vocabulary=None if sparse_encoder is not None else terms,
            source=manifest.get("source"),
            **kwargs,
        )
        return index
