"""Dense retrieval over FAISS: exact, HNSW, IVF-PQ and int8 scalar quantisation with exact rescoring.

Score = inner product ``<q, d>`` of the query and document vectors (equal to cosine similarity when
the encoder L2-normalises, its default). Vectors come from a :class:`~distilir_index.encoders.DenseEncoder`
or are given precomputed (``add(ids, vectors=...)``); queries are strings (encoded with the index's
encoder) or a float32 matrix.

Index types (``index=``), or any FAISS factory string (inner-product metric)::

    "flat"   IndexFlatIP                   exact; the reference for everything else
    "hnsw"   HNSW{hnsw_m},Flat              graph search; efSearch settable per search; no removal
                                            (deletes are tombstones, compact() rebuilds)
    "ivfpq"  IVF{nlist},PQ{m}x{nbits}np     needs training: vectors are buffered and it is trained on
                                            all of them on the first search or save (nlist, m and nbits
                                            chosen from the corpus size unless given; see _ivfpq_shape);
                                            nprobe settable per search
    "sq8"    SQ8                            int8 codes; the top rescore_factor x k candidates are
                                            rescored exactly with the float vectors kept in
                                            vectors.npy (memory-mapped with load(mmap=True))

An IVF-PQ quantiser trained elsewhere -- e.g. by distillation from this index's own float vectors
(:mod:`distilir_index.distill_vq`, ``distilir-index distill-pq``) -- goes under a copy of an index with
:meth:`DenseIndex.with_quantizer`; FAISS encodes and searches with it as with its own.

Written rescoring by hand rather than FAISS's ``IndexRefineFlat``: that one keeps the float vectors
in RAM inside the FAISS file, while here they are a plain ``.npy`` that can stay on disk.

Ids: FAISS holds int64 *positions* (``IndexIDMap2`` around non-IVF indexes, IVF's own ids) that map
to string ids through :class:`~distilir_index.loading.DocumentTable`. ``delete`` uses FAISS
``remove_ids`` where the index supports it (flat, SQ, IVF); elsewhere (HNSW) the positions stay in
the graph as tombstones, excluded at search time by an ``IDSelectorBitmap``; ``compact()`` rebuilds.

Filters are pre-filters: the allowed positions become ``SearchParameters(sel=IDSelectorBitmap)``.
For flat this is exact. HNSW and IVF still walk the graph / probe lists through documents the
selector rejects, so under a selective filter they can return fewer than ``k`` hits or miss good
ones. Hence two rules: (1) when at most ``exact_filter_threshold`` documents pass (default 10,000),
the query is answered by brute force over exactly those vectors (cost ``|allowed| x d`` multiply-adds
per query: ~4M for 10k x 384-d, sub-millisecond, and exact); (2) whenever an approximate search
returns fewer than ``min(k, documents that pass)`` hits, that query is redone by brute force. So
``k`` hits come back whenever ``k`` documents pass, for every index type.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.base import ArtifactDir, BaseIndex, Hit, IndexError_, ManifestError, read_manifest
from distilir_index.encoders import DenseEncoder, EncoderMismatch, check_encoder_compatible
from distilir_index.loading import DocumentTable

__all__ = ["PRESETS", "DenseIndex"]

#: Named index types; anything else is passed to ``faiss.index_factory`` as a factory string.
PRESETS = ("flat", "hnsw", "ivfpq", "sq8")
_ADD_CHUNK = 65_536


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency of distilir-index
        raise ImportError("DenseIndex needs FAISS: `pip install faiss-cpu`") from exc
    return faiss


def _ivfpq_shape(
    n: int, d: int, nlist: int | None, pq_m: int | None, pq_nbits: int | None
) -> tuple[int, int, int]:
    """Choose (nlist, m, nbits) for IVF-PQ over ``n`` training vectors of dimension ``d``.

    * nlist = round(4 * sqrt(n)) (FAISS guideline: 4..16 sqrt(n)), capped at n / 39 because k-means
      wants >= 39 training points per centroid;
    * m = the largest divisor of d that is <= d / 8 (48 sub-quantisers, 48 bytes a vector, for 384-d);
    * nbits = 8 (256 centroids per sub-quantiser), lowered for small corpora to floor(log2(n / 39))
      so every PQ codebook has >= 39 points per centroid.
    """
    if nlist is None:
        nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39))
    if pq_m is None:
        pq_m = next(m for m in range(max(1, d // 8), 0, -1) if d % m == 0)
    if d % pq_m:
        raise ValueError(f"pq_m must divide the dimension {d}, got {pq_m}")
    if pq_nbits is None:
        pq_nbits = int(min(8, max(1, math.floor(math.log2(max(n, 2) / 39))))) if n >= 78 else 1
    return int(nlist), int(pq_m), int(pq_nbits)


class _VectorStore:
    """Float32 vectors by position: a base array (possibly memory-mapped) plus appended chunks."""

    def __init__(self, dim: int, base: np.ndarray | None = None) -> None:
        self.dim = dim
        self._base = base if base is not None else np.zeros((0, dim), dtype=np.float32)
        self._chunks: list[np.ndarray] = []
        self._n = len(self._base)

    def __len__(self) -> int:
        return self._n

    def append(self, x: np.ndarray) -> None:
        self._chunks.append(np.array(x, dtype=np.float32, copy=True))
        self._n += len(x)

    def array(self) -> np.ndarray:
        if self._chunks:
            self._base = np.concatenate([np.asarray(self._base), *self._chunks])
            self._chunks = []
        return self._base

    def take(self, positions: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.array()[positions], dtype=np.float32)

    def keep(self, positions: np.ndarray) -> None:
        self._base = np.ascontiguousarray(self.array()[positions])
        self._n = len(self._base)


class DenseIndex(BaseIndex):
    """A FAISS index over document vectors, with string ids, metadata, filters and atomic save/load.

    Args:
        encoder: encodes documents on ``add(ids, texts)`` and string queries on ``search``; may be
            None when vectors are always given.
        index: "flat" (default), "hnsw", "ivfpq", "sq8", or a FAISS factory string.
        dimension: vector size; taken from the encoder or the first vectors added when not given.
        hnsw_m / ef_construction: HNSW graph degree and build beam (defaults 32 and 40).
        ef_search: HNSW search beam (default 64; raised to at least the number of candidates).
        nlist / pq_m / pq_nbits: IVF-PQ shape, chosen from the corpus size when None (_ivfpq_shape).
        nprobe: IVF lists visited per query (default 16).
        rescore_factor: rescore the top ``rescore_factor x k`` candidates with the float vectors
            (default 4 for "sq8", 0 = off otherwise; any lossy index keeps float vectors).
        exact_filter_threshold: filtered searches allowing at most this many documents are done by
            brute force over them (default 10,000; see the module docstring).
        store_text: keep texts so hits carry them (default True).
        show_progress: progress bars for long adds (None: for >= 10,000 documents).

    Example::

        index = DenseIndex(DenseEncoder("all-MiniLM-L6-v2"), index="hnsw")
        index.add(ids, texts, metadata=metas)
        index.search(["what is BM25?"], k=10, filters={"lang": "en"}, ef_search=128)
        index.save("indexes/my-dense")
        index = DenseIndex.load("indexes/my-dense", mmap=True)
    """

    kind = "dense"
    help = "dense vectors in FAISS (flat, HNSW, IVF, IVF-PQ) with a sentence-transformers encoder"

    @classmethod
    def from_settings(
        cls,
        *,
        model: Any = None,
        encoder: DenseEncoder | None = None,
        factory: str | None = None,
        batch_size: int | None = None,
        **settings: Any,
    ) -> DenseIndex:
        """``make_index("dense", model=NAME, factory="flat" | "hnsw" | FAISS string, batch_size=64,
        **DenseIndex keywords)``; ``model`` (a hub id, folder or packaged name) builds the encoder."""
        if model is not None and encoder is not None:
            raise ValueError("give model= (a name to load) or encoder= (a DenseEncoder), not both")
        if model is not None:
            from distilir_index.encoders import DenseEncoder

            encoder = DenseEncoder(model, **({"batch_size": batch_size} if batch_size else {}))
        if factory is not None:
            settings["index"] = factory
        return super().from_settings(encoder=encoder, **settings)

    def __init__(
        self,
        encoder: DenseEncoder | None = None,
        *,
        index: str = "flat",
        dimension: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 64,
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_nbits: int | None = None,
        nprobe: int = 16,
        rescore_factor: int | None = None,
        exact_filter_threshold: int = 10_000,
        store_text: bool = True,
        show_progress: bool | None = None,
    ) -> None:
        if encoder is not None and not callable(getattr(encoder, "encode_queries", None)):
            raise TypeError(
                "encoder must be a distilir_index.encoders.DenseEncoder (or None), "
                f"got {type(encoder).__name__}; "
                "wrap a sentence-transformers model with DenseEncoder(model)"
            )
        if not isinstance(index, str) or not index:
            raise ValueError(f"index must be one of {PRESETS} or a FAISS factory string, got {index!r}")
        for name, value, low in (
            ("hnsw_m", hnsw_m, 2),
            ("ef_construction", ef_construction, 1),
            ("ef_search", ef_search, 1),
            ("nprobe", nprobe, 1),
            ("exact_filter_threshold", exact_filter_threshold, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        for name, value in (
            ("nlist", nlist),
            ("pq_m", pq_m),
            ("pq_nbits", pq_nbits),
            ("dimension", dimension),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if pq_nbits is not None and pq_nbits > 16:
            raise ValueError(f"pq_nbits must be <= 16, got {pq_nbits}")
        if rescore_factor is None:
            rescore_factor = 4 if index == "sq8" else 0
        if not isinstance(rescore_factor, int) or rescore_factor < 0:
            raise ValueError(f"rescore_factor must be an int >= 0 (0 = no rescoring), got {rescore_factor!r}")
        if encoder is not None:
            if dimension is not None and dimension != encoder.dimension:
                raise ValueError(
                    f"dimension={dimension} but the encoder produces {encoder.dimension}-d vectors"
                )
            dimension = encoder.dimension

        self.encoder = encoder
        self.index_type = index
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.nlist, self.pq_m, self.pq_nbits, self.nprobe = nlist, pq_m, pq_nbits, nprobe
        self.ivf_shape: dict[str, int] | None = None  # resolved IVF-PQ shape after training
        self.trained_by: dict[str, Any] | None = None  # a quantiser not trained by FAISS (with_quantizer)
        self.rescore_factor = rescore_factor
        self.exact_filter_threshold = exact_filter_threshold
        self.store_text = bool(store_text)
        self.show_progress = show_progress

        self.dimension: int | None = None
        self.factory: str | None = None  # resolved FAISS factory string
        self._faiss_index: Any = None  # None until created (IVF-PQ: until trained)
        self._keep_vectors = False
        self._vectors: _VectorStore | None = None
        self._pending_from = 0  # positions >= this are not yet in FAISS (untrained index)
        self._ghosts = 0  # deleted positions still inside FAISS (index without remove_ids)
        self._removable: bool | None = None
        self._mmapped = False
        self._faiss_file: Path | None = None  # the file a memory-mapped index maps
        self._sel_cache: tuple[Any, Any] | None = None
        self._docs = DocumentTable(store_text=self.store_text)
        self._lock = threading.RLock()
        if dimension is not None:
            self._init_dimension(dimension)

    # -- construction helpers ----------------------------------------------------------------------
    def _init_dimension(self, d: int) -> None:
        faiss = _faiss()
        self.dimension = int(d)
        if self.index_type == "ivfpq":
            self._keep_vectors = True  # lossy codes, and the training buffer
        else:
            self.factory = {"flat": "Flat", "hnsw": f"HNSW{self.hnsw_m}", "sq8": "SQ8"}.get(
                self.index_type, self.index_type
            )
            try:
                probe = faiss.index_factory(self.dimension, self.factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise ValueError(
                    f"FAISS cannot build {self.factory!r} for {self.dimension}-d vectors: {exc}. Use one of "
                    f"{PRESETS} or a valid factory string (https://github.com/facebookresearch/faiss/wiki/The-index-factory)"
                ) from exc
            core = faiss.downcast_index(probe)
            self._keep_vectors = (
                not isinstance(core, (faiss.IndexFlat, faiss.IndexHNSWFlat)) or not probe.is_trained
            )
            if probe.is_trained:
                self._faiss_index = self._wrap(probe)
        if self._keep_vectors:
            self._vectors = _VectorStore(self.dimension)

    def _wrap(self, index: Any) -> Any:
        """Give an index int64 ids: IVF has them natively, others go in an IndexIDMap2."""
        faiss = _faiss()
        core = faiss.downcast_index(index)
        if isinstance(core, faiss.IndexHNSW):
            core.hnsw.efConstruction = self.ef_construction
            core.hnsw.efSearch = self.ef_search
        try:
            faiss.extract_index_ivf(index)
            return index
        except RuntimeError:
            return faiss.IndexIDMap2(index)

    def _new_trained_index(self, positions: np.ndarray) -> Any:
        """Create the FAISS index and train it on (a seeded sample of) the vectors of ``positions``.

        Sample size: 64 points per IVF centroid (and >= 39 per PQ centroid) for IVF-PQ, 262,144 for
        other factory strings -- k-means quality saturates well before FAISS's own cap of 256 per
        centroid, and training time grows with it."""
        faiss = _faiss()
        cap = 262_144
        if self.index_type == "ivfpq":
            nlist, m, nbits = _ivfpq_shape(
                len(positions), self.dimension, self.nlist, self.pq_m, self.pq_nbits
            )
            self.ivf_shape = {"nlist": nlist, "pq_m": m, "pq_nbits": nbits}
            # "np": no polysemous training (a slow annealing of code ids, only useful for Hamming
            # pre-filtering, which this index does not use) -- 10x faster training.
            self.factory = f"IVF{nlist},PQ{m}x{nbits}np"
            cap = max(64 * nlist, 39 * 2**nbits)
        index = faiss.index_factory(self.dimension, self.factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            if len(positions) == 0:
                raise IndexError_(f"{self.factory} needs training vectors; add documents before searching")
            if len(positions) > cap:
                positions = np.sort(np.random.RandomState(0).choice(positions, cap, replace=False))
            assert self._vectors is not None  # untrained indexes always keep their float vectors
            index.train(self._vectors.take(positions))
        return self._wrap(index)

    def _materialize(self) -> None:
        """Create/train the FAISS index if needed and add the vectors buffered before training."""
        if self.dimension is None or (
            self._faiss_index is not None and self._pending_from >= self._docs.n_positions
        ):
            return
        pending = np.arange(self._pending_from, self._docs.n_positions, dtype=np.int64)
        pending = pending[self._docs.live[pending]]
        if self._faiss_index is None:
            if len(pending) == 0:
                return
            self._faiss_index = self._new_trained_index(pending)
        if len(pending):
            self._faiss_add(self._vectors.take(pending), pending)  # type: ignore[union-attr]
        self._pending_from = self._docs.n_positions

    def _faiss_add(self, x: np.ndarray, positions: np.ndarray) -> None:
        from tqdm.auto import tqdm

        self._own()
        show = len(x) >= 10_000 if self.show_progress is None else self.show_progress
        steps = range(0, len(x), _ADD_CHUNK)
        for s in tqdm(
            steps, desc=f"FAISS add ({self.factory})", unit="chunk", disable=not show or len(steps) < 2
        ):
            self._faiss_index.add_with_ids(x[s : s + _ADD_CHUNK], positions[s : s + _ADD_CHUNK])
        self._sel_cache = None

    def _own(self) -> None:
        """A memory-mapped FAISS index is read-only: read a private in-memory copy before writing.

        Re-read from the file, not serialised from the mapped object: a mapped IVF index holds
        OnDiskInvertedLists, whose serialisation is a reference to the file rather than the data."""
        if not (self._mmapped and self._faiss_index is not None):
            return
        faiss = _faiss()
        if self._faiss_file is not None and self._faiss_file.is_file():
            self._faiss_index = faiss.read_index(str(self._faiss_file))
        elif "IVF" not in (self.factory or ""):
            self._faiss_index = faiss.deserialize_index(faiss.serialize_index(self._faiss_index))
        else:
            raise IndexError_(
                f"the memory-mapped FAISS file {self._faiss_file} was removed (another save to the same "
                "directory?); reload the index before changing it"
            )
        self._mmapped = False

    # -- description -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __repr__(self) -> str:
        return (
            f"DenseIndex(index={self.index_type!r}, factory={self.factory!r}, dimension={self.dimension}, "
            f"docs={len(self)})"
        )

    def get_config_dict(self) -> dict[str, Any]:
        """Constructor arguments (besides the encoder) that rebuild an equivalent empty index."""
        return {
            "index": self.index_type,
            "dimension": self.dimension,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "pq_m": self.pq_m,
            "pq_nbits": self.pq_nbits,
            "nprobe": self.nprobe,
            "rescore_factor": self.rescore_factor,
            "exact_filter_threshold": self.exact_filter_threshold,
            "store_text": self.store_text,
        }

    def describe(self) -> dict[str, Any]:
        """What the manifest records: settings, the encoder's description, the corpus."""
        faiss = _faiss()
        settings = self.get_config_dict()
        settings.update(
            {
                "factory": self.factory,
                "ivf_shape": self.ivf_shape,
                **({"trained_by": self.trained_by} if self.trained_by is not None else {}),
                "metric": "inner_product",
                "keep_vectors": self._keep_vectors,
                "positions": self._docs.n_positions,
                "tombstones_in_faiss": self._ghosts,
                "library": {"name": "faiss", "version": faiss.__version__},
            }
        )
        encoder = self.encoder.describe() if self.encoder is not None else None
        return {"kind": self.kind, "settings": settings, "encoder": encoder, "corpus": self._docs.corpus()}

    # -- writes ------------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        vectors: np.ndarray | None = None,
    ) -> None:
        """Add documents: ``texts`` are encoded with the index's encoder unless ``vectors`` ([n, d],
        float32, used as given -- normalise them yourself for cosine) are passed."""
        ids, texts, metas = self._docs.check_new(ids, texts, metadata)
        if vectors is None:
            if texts is None:
                raise ValueError("DenseIndex.add needs texts (with an encoder) or vectors=[n, d] array")
            if self.encoder is None:
                raise ValueError(
                    "this DenseIndex has no encoder, so it cannot encode texts; pass vectors=... or build "
                    "DenseIndex(DenseEncoder(model))"
                )
            show = len(texts) >= 1000 if self.show_progress is None else self.show_progress
            vectors = self.encoder.encode_documents(texts, show_progress=show)
        x = self._check_matrix(vectors, "vectors", len(ids))
        with self._lock:
            if self.dimension is None:
                self._init_dimension(x.shape[1])
            elif x.shape[1] != self.dimension:
                raise ValueError(
                    f"vectors have dimension {x.shape[1]}, this index holds {self.dimension}-d vectors"
                )
            positions = self._docs.add(ids, texts, metas)
            if self._vectors is not None:
                self._vectors.append(x)
            if self._faiss_index is not None and self._pending_from == positions[0]:
                self._faiss_add(x, positions)
                self._pending_from = self._docs.n_positions
            self._sel_cache = None

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (unknown ids are ignored); returns how many were deleted."""
        with self._lock:
            removed = self._docs.delete(ids)
            in_faiss = removed[removed < self._pending_from]
            if len(in_faiss) and self._faiss_index is not None:
                if self._removable is not False:
                    self._own()
                    try:
                        self._faiss_index.remove_ids(in_faiss)
                        self._removable = True
                    except RuntimeError:  # e.g. HNSW: "remove_ids not implemented for this type of index"
                        self._removable = False
                if self._removable is False:
                    self._ghosts += len(in_faiss)
            self._sel_cache = None
            return int(len(removed))

    def compact(self) -> None:
        """Rebuild FAISS over the live documents only (drops tombstones; retrains IVF) and renumber
        positions. O(n) adds; for HNSW a full graph rebuild."""
        with self._lock:
            if self.dimension is None:
                return
            live = np.flatnonzero(self._docs.live).astype(np.int64)
            x = self._vectors_at(live) if len(live) else np.zeros((0, self.dimension), np.float32)
            template = None
            if self.trained_by is not None and self._faiss_index is not None:
                # a learned quantiser (with_quantizer) is kept: FAISS's k-means would undo it
                self._own()
                template = _faiss().clone_index(self._faiss_index)
                template.reset()
            self._docs.compact()
            if self._vectors is not None:
                self._vectors = _VectorStore(self.dimension, np.ascontiguousarray(x))
            self._faiss_index, self._ghosts, self._removable, self._mmapped = None, 0, None, False
            self._pending_from = 0
            if self.index_type == "ivfpq" and template is None:
                self.factory = None
            self._sel_cache = None
            if template is not None:
                self._faiss_index = template
            elif self.index_type != "ivfpq":
                probe = _faiss().index_factory(self.dimension, self.factory, _faiss().METRIC_INNER_PRODUCT)
                if probe.is_trained:
                    self._faiss_index = self._wrap(probe)
            if self._faiss_index is not None and len(x):
                self._faiss_add(x, np.arange(len(x), dtype=np.int64))
                self._pending_from = len(x)
            else:
                self._materialize()

    def with_quantizer(
        self,
        trained: Any,
        *,
        trained_by: Mapping[str, Any] | None = None,
        nprobe: int | None = None,
        rescore_factor: int = 0,
    ) -> DenseIndex:
        """A new IVF-PQ index of this index's documents (ids, texts, metadata, float vectors, encoder)
        encoded with ``trained``: a trained, empty ``faiss.IndexIVFPQ`` of inner-product metric, e.g.
        one learned by :func:`distilir_index.distill_vq.distill_ivfpq` instead of FAISS's k-means.

        FAISS encodes the vectors with it and searches it as any IVF-PQ index; ``trained_by`` (what
        produced the quantiser, with its settings) is recorded in the manifest, and ``compact()``
        keeps the quantiser instead of retraining it. This index is left unchanged."""
        faiss = _faiss()
        core = faiss.downcast_index(trained) if trained is not None else None
        if not isinstance(core, faiss.IndexIVFPQ):
            raise TypeError(f"trained must be a faiss.IndexIVFPQ, got {type(trained).__name__}")
        problems = []
        if core.metric_type != faiss.METRIC_INNER_PRODUCT:
            problems.append("its metric is not inner product (this index scores <q, d>)")
        if not core.is_trained:
            problems.append("it is not trained")
        if core.ntotal:
            problems.append(f"it already holds {core.ntotal} vectors (an empty quantiser is expected)")
        if self.dimension is not None and core.d != self.dimension:
            problems.append(f"it is {core.d}-d, this index holds {self.dimension}-d vectors")
        if not core.by_residual:
            problems.append("it does not encode residuals (by_residual=False)")
        if problems:
            raise ValueError("cannot use this quantiser: " + "; ".join(problems))
        with self._lock:
            self._materialize()
            live = np.flatnonzero(self._docs.live).astype(np.int64)
            x = self._vectors_at(live) if len(live) else np.zeros((0, core.d), np.float32)
            out = DenseIndex(
                self.encoder,
                index="ivfpq",
                dimension=None if self.encoder is not None else core.d,
                nlist=int(core.nlist),
                pq_m=int(core.pq.M),
                pq_nbits=int(core.pq.nbits),
                nprobe=nprobe if nprobe is not None else self.nprobe,
                rescore_factor=rescore_factor,
                exact_filter_threshold=self.exact_filter_threshold,
                store_text=self.store_text,
                show_progress=self.show_progress,
            )
            if out.dimension is None:
                out._init_dimension(core.d)
            out._docs = copy.deepcopy(self._docs)
            out._docs.compact()
            out._vectors = _VectorStore(core.d, np.ascontiguousarray(x, dtype=np.float32))
        out.ivf_shape = {"nlist": out.nlist, "pq_m": out.pq_m, "pq_nbits": out.pq_nbits}  # type: ignore[dict-item]
        out.factory = f"IVF{out.nlist},PQ{out.pq_m}x{out.pq_nbits}np"
        out.trained_by = dict(trained_by) if trained_by is not None else {"method": "given"}
        out._faiss_index = faiss.clone_index(core)
        out._pending_from = 0
        out._materialize()
        return out

    # -- search ------------------------------------------------------------------------------------
    def _check_matrix(self, x: Any, name: str, rows: int | None = None) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a numpy array of shape [n, d], got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D [n, d], got shape {x.shape}; for one vector use v.reshape(1, -1)"
            )
        if rows is not None and x.shape[0] != rows:
            raise ValueError(f"got {rows} ids but {x.shape[0]} {name}; pass one vector per id")
        if self.dimension is not None and x.shape[1] != self.dimension:
            raise ValueError(
                f"{name} have dimension {x.shape[1]}, this index holds {self.dimension}-d vectors"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        return x

    def _query_matrix(self, queries: Any) -> np.ndarray:
        if isinstance(queries, np.ndarray):
            return self._check_matrix(queries, "query vectors")
        if isinstance(queries, (str, bytes)):
            raise TypeError(
                "queries must be a list of strings or an [n, d] array, got a single string; wrap it in a list"
            )
        queries = list(queries)
        if not all(isinstance(q, str) for q in queries):
            raise TypeError("queries must be all strings or one float32 array [n, d]")
        if self.encoder is None:
            raise ValueError(
                "this DenseIndex has no encoder to encode query strings; pass query vectors, or load it with "
                "DenseIndex.load(path) (rebuilds the encoder from the manifest) or encoder=DenseEncoder(...)"
            )
        if not queries:
            return np.zeros((0, self.encoder.dimension), dtype=np.float32)
        return self._check_matrix(self.encoder.encode_queries(queries), "query vectors")

    def ids(self) -> list[str]:
        """Ids of the live documents, in the order of :meth:`vectors`."""
        return [self._docs.ids[p] for p in np.flatnonzero(self._docs.live)]  # type: ignore[misc]

    def vectors(self) -> np.ndarray:
        """Float vectors of the live documents (``[len(self), dimension]``), in the order of
        :meth:`ids`: read from the kept float store, else reconstructed from exact FAISS codes
        (approximate for PQ / SQ codes). Reading them changes nothing on disk."""
        self._materialize()
        positions = np.flatnonzero(self._docs.live).astype(np.int64)
        if not len(positions):
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        return np.ascontiguousarray(self._vectors_at(positions), dtype=np.float32)

    def _vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """Float vectors of positions: the kept float store, else reconstructed from exact FAISS codes."""
        if self._vectors is not None:
            return self._vectors.take(positions)
        out = np.empty((len(positions), self.dimension), dtype=np.float32)  # type: ignore[arg-type]
        for s in range(0, len(positions), _ADD_CHUNK):
            part = positions[s : s + _ADD_CHUNK]
            out[s : s + len(part)] = self._faiss_index.reconstruct_batch(part)
        return out

    def _selector(self, allowed: np.ndarray | None) -> Any:
        """IDSelectorBitmap over positions (None if nothing needs excluding)."""
        faiss = _faiss()
        n = self._docs.n_positions
        if allowed is None:
            if self._ghosts == 0:
                return None
            if self._sel_cache is None:
                bitmap = np.packbits(self._docs.live, bitorder="little")
                self._sel_cache = (faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)), bitmap)
            return self._sel_cache[0]
        mask = np.zeros(n, dtype=bool)
        mask[allowed] = True
        bitmap = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        sel._distilir_bitmap = bitmap  # keep the buffer alive as long as the selector
        return sel

    def _params(self, sel: Any, k_fetch: int, ef_search: int | None, nprobe: int | None) -> Any:
        faiss = _faiss()
        index = self._faiss_index
        if isinstance(faiss.downcast_index(index), faiss.IndexIDMap2):
            index = faiss.downcast_index(index).index
        core = faiss.downcast_index(index)
        pre = isinstance(core, faiss.IndexPreTransform)
        if pre:
            core = faiss.downcast_index(core.index)
        if isinstance(core, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search or self.ef_search, k_fetch))
        elif isinstance(core, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(nprobe=min(nprobe or self.nprobe, core.nlist))
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        if pre:
            params = faiss.SearchParametersPreTransform(index_params=params)
        return params

    def _exact(self, x: np.ndarray, k: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force inner products of ``x`` against the vectors of ``positions``."""
        faiss = _faiss()
        kk = min(k, len(positions))
        scores, idx = faiss.knn(x, self._vectors_at(positions), kk, metric=faiss.METRIC_INNER_PRODUCT)
        return scores, np.where(idx >= 0, positions[np.maximum(idx, 0)], -1)

    def _rescore(self, x: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products for candidate positions (-1 = none), best ``k`` per query."""
        scores = np.full(cand.shape, -np.inf, dtype=np.float32)
        step = max(1, 262_144 // max(1, cand.shape[1]))  # bound the gathered block to ~256k vectors
        for s in range(0, len(x), step):
            block = cand[s : s + step]
            ok = block >= 0
            vecs = self._vectors_at(block[ok])
            rows = np.nonzero(ok)[0]
            part = scores[s : s + step]
            part[ok] = np.einsum("ij,ij->i", vecs, x[s : s + step][rows])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(cand, order, axis=1)
        return top, np.where(np.isfinite(top), ids, -1)

    def search(
        self,
        queries: Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
        rescore_factor: int | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        """Top-``k`` documents per query by inner product, best first.

        Args:
            queries: query strings (encoded with the index's encoder) or a float32 array [n, d].
            k: hits per query (at most).
            filters / ids: pre-filter by metadata conditions (distilir_index.filters) and/or ids.
            ef_search / nprobe / rescore_factor: override the index settings for this call.
            exact: brute force over all (allowed) vectors, whatever the index type.
        """
        k = self.check_k(k)
        x = self._query_matrix(queries)
        out: list[list[Hit]] = [[] for _ in range(len(x))]
        if len(x) == 0:
            return out
        with self._lock:
            self._materialize()
            docs = self._docs
            allowed = docs.allowed(filters, ids)
            n_pass = len(docs) if allowed is None else len(allowed)
            if n_pass == 0 or self._faiss_index is None:
                return out
            kk = min(int(k), n_pass)
            rescore = self.rescore_factor if rescore_factor is None else rescore_factor
            if exact or (allowed is not None and len(allowed) <= self.exact_filter_threshold):
                candidates = allowed if allowed is not None else np.flatnonzero(docs.live).astype(np.int64)
                scores, pos = self._exact(x, kk, candidates)
            else:
                k_fetch = min(kk * rescore, n_pass) if rescore and self._vectors is not None else kk
                params = self._params(self._selector(allowed), k_fetch, ef_search, nprobe)
                scores, pos = self._faiss_index.search(x, k_fetch, params=params)
                if rescore and self._vectors is not None:
                    scores, pos = self._rescore(x, pos, kk)
                short = np.flatnonzero((pos[:, :kk] >= 0).sum(axis=1) < kk)
                if len(short):  # approximate search came back short: answer those queries exactly
                    candidates = (
                        allowed if allowed is not None else np.flatnonzero(docs.live).astype(np.int64)
                    )
                    s2, p2 = self._exact(x[short], kk, candidates)
                    scores, pos = scores[:, :kk].copy(), pos[:, :kk].copy()
                    scores[short], pos[short] = s2, p2
            for q in range(len(x)):
                out[q] = [
                    docs.hit(int(p), float(s))
                    for p, s in zip(pos[q][:kk], scores[q][:kk], strict=True)
                    if p >= 0
                ]
        return out

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index into ``path`` atomically (see distilir_index.base). Files of a generation:
        ``index.gN.faiss`` (faiss.write_index; ids are positions), ``vectors.gN.npy`` (float32
        ``[positions, d]``, only for lossy indexes), ``docs.gN.jsonl`` and ``digests.gN.npy``
        (see distilir_index.loading). Trains an untrained IVF index first."""
        faiss = _faiss()
        with self._lock:
            self._materialize()
            described = self.describe()
            with ArtifactDir(path, kind=self.kind) as art:
                faiss_file = None
                if self._faiss_index is not None and self._mmapped and self._faiss_file is not None:
                    # unchanged since a memory-mapped load: copy the file (see _own for why)
                    source = self._faiss_file
                    faiss_file = art.write("faiss", "index.faiss", lambda tmp: shutil.copyfile(source, tmp))
                elif self._faiss_index is not None:
                    faiss_file = art.write(
                        "faiss", "index.faiss", lambda tmp: faiss.write_index(self._faiss_index, str(tmp))
                    )
                if self._vectors is not None:
                    vectors = self._vectors.array()

                    def write_vectors(tmp: Path) -> None:
                        with open(tmp, "wb") as f:
                            np.save(f, vectors)

                    art.write("vectors", "vectors.npy", write_vectors)
                self._docs.save(art)
                art.commit(
                    settings=described["settings"], corpus=described["corpus"], encoder=described["encoder"]
                )
            if self._mmapped and faiss_file is not None:
                self._faiss_file = faiss_file  # the mapped file may be swept; this copy is identical
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        encoder: DenseEncoder | None = None,
        *,
        mmap: bool = False,
        load_encoder: bool = True,
    ) -> DenseIndex:
        """Open an index written by :meth:`save`.

        Args:
            encoder: the query encoder; it must match the one recorded in the manifest (model
                fingerprint, dimension, pooling, normalisation, prompts) or EncoderMismatch is raised.
                When None, it is rebuilt from the manifest (DenseEncoder.from_description).
            mmap: memory-map the FAISS file (IO_FLAG_MMAP for IVF, IO_FLAG_MMAP_IFC for flat codes /
                HNSW / SQ) and the float vectors; the first write then copies the index into memory.
            load_encoder: False to skip loading the model (search with vectors only).
        """
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        settings = dict(manifest.get("settings") or {})
        recorded = manifest.get("encoder")
        if encoder is not None:
            if recorded is not None:
                check_encoder_compatible(recorded, encoder.describe())
            elif settings.get("dimension") not in (None, encoder.dimension):
                raise EncoderMismatch(
                    f"the index holds {settings.get('dimension')}-d vectors "
                    "(built from precomputed vectors), "
                    f"the encoder produces {encoder.dimension}-d vectors"
                )
        elif recorded is not None and load_encoder:
            encoder = DenseEncoder.from_description(recorded)
            check_encoder_compatible(recorded, encoder.describe())
        index = cls(
            encoder,
            index=settings["index"],
            dimension=settings.get("dimension") if encoder is None else None,
            hnsw_m=settings.get("hnsw_m", 32),
            ef_construction=settings.get("ef_construction", 40),
            ef_search=settings.get("ef_search", 64),
            nlist=settings.get("nlist"),
            pq_m=settings.get("pq_m"),
            pq_nbits=settings.get("pq_nbits"),
            nprobe=settings.get("nprobe", 16),
            rescore_factor=settings.get("rescore_factor"),
            exact_filter_threshold=settings.get("exact_filter_threshold", 10_000),
            store_text=settings.get("store_text", True),
        )
        if encoder is not None and settings.get("dimension") not in (None, index.dimension):
            raise EncoderMismatch(
                f"the index holds {settings.get('dimension')}-d vectors, "
                f"the encoder produces {index.dimension}-d"
            )
        files = manifest["files"]
        index._docs = DocumentTable.load(path, manifest)
        n = index._docs.n_positions
        index.factory = settings.get("factory")
        index.ivf_shape = settings.get("ivf_shape")
        index.trained_by = settings.get("trained_by")
        if index.dimension is None and settings.get("dimension") is not None:
            index._init_dimension(int(settings["dimension"]))
        if "vectors" in files:
            base = np.load(path / files["vectors"], mmap_mode="r" if mmap else None)
            if base.shape != (n, index.dimension):
                raise ManifestError(
                    f"{path}: vectors.npy has shape {base.shape}, expected ({n}, {index.dimension})"
                )
            index._vectors = _VectorStore(index.dimension, base)  # type: ignore[arg-type]
            index._keep_vectors = True
        if "faiss" in files:
            index._faiss_index = _read_faiss(path / files["faiss"], mmap, ivf="IVF" in (index.factory or ""))
            index._mmapped = mmap
            index._faiss_file = path / files["faiss"]
            index._pending_from = n
        else:
            index._faiss_index = None
            index._pending_from = 0
        index._ghosts = int(settings.get("tombstones_in_faiss", 0))
        index._removable = False if index._ghosts else None
        return index


def _read_faiss(file: Path, mmap: bool, ivf: bool) -> Any:
    """Read a FAISS file; with ``mmap``, IVF inverted lists are memory-mapped (IO_FLAG_MMAP) and
    other indexes' flat code arrays mapped in place (IO_FLAG_MMAP_IFC, FAISS >= 1.10)."""
    faiss = _faiss()
    if not mmap:
        return faiss.read_index(str(file))
    flag = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if ivf else getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if flag is not None:
        try:
            return faiss.read_index(str(file), flag)
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0]
    else:
        reason = "this FAISS version has no IO_FLAG_MMAP_IFC"
    warnings.warn(f"{file} cannot be memory-mapped ({reason}); loading it into memory", stacklevel=3)
    return faiss.read_index(str(file))
