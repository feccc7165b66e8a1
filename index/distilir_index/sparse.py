"""Learned-sparse retrieval (SPLADE and any other term-weight model) over an embedded inverted index.

Score = the exact dot product of the query's and the document's sparse term-weight vectors::

    s(q, d) = Σ_{t ∈ q ∩ d} w_q(t) · w_d(t)          (weights >= 0, float32)

Documents come as texts (encoded by a :class:`~distilir_index.sparse_encoder.SparseEncoder`) or as
precomputed ``{term: weight}`` dicts (``add(ids, weights=[...])``); queries likewise.

Data structure: the inverted index is a scipy.sparse CSR matrix ``postings`` of shape
``[terms, documents]``: row ``t`` holds term ``t``'s postings list (document positions in
``indices``, float32 weights in ``data``). A batch of queries ``Q`` (CSR ``[queries, terms]``) is
scored by one sparse x sparse product ``S = Q · postings``, which touches only the postings of the
query terms (term-at-a-time accumulation, done in scipy's C++ SpGEMM); ``argpartition`` over each
row's non-zero scores then gives the top ``k``. This is exhaustive, so results equal brute force
(up to float32 summation order), unlike WAND/block-max pruning in Lucene or PISA.

Why no library: pyserini/Anserini (Lucene impact indexes) need a JVM, which comes later as an
optional backend; ``sentence_transformers.sparse_encoder.search_engines`` only wraps external
servers (Elasticsearch, OpenSearch, Qdrant, Seismic); PISA has no maintained Python wheel. scipy is
already a dependency of bm25s and gives exact scores with a few dozen lines of bookkeeping.

Writes without a rebuild: new documents are appended to a *pending* segment (document-major CSR
blocks). Searches score the main segment and the pending one (its term-major transpose is cached)
and merge; the pending segment is merged into the main one (an O(postings) column stack) once it
holds more than a quarter of the main segment's postings, on :meth:`SparseIndex.consolidate` or on
save. Deletes are tombstones (a live mask applied before ranking, so a deleted document is never
returned); :meth:`SparseIndex.compact` - called by ``save`` - drops their postings.

Ranking: descending score, ties broken by insertion order. Filters are pre-filters: only documents
that pass compete, and ``min(k, documents passing)`` hits come back - documents that share no term
with the query (score 0) fill the list after all matching ones, as an exact brute-force dot product
would rank them.

On disk (one generation of an index directory; see distilir_index.base for the atomic protocol):

* ``postings.gN.npz`` -- ``scipy.sparse.save_npz`` of the CSR ``[terms, positions]`` float32 matrix
  (readable with ``scipy.sparse.load_npz``; row t = postings of term ``vocabulary[t]``);
* ``vocabulary.gN.json`` -- JSON list of terms, the row order of ``postings``;
* ``docs.gN.jsonl`` / ``digests.gN.npy`` -- the document table (distilir_index.loading.DocumentTable);
* with ``query_side="idf"``: ``query_tokenizer.gN.json``, ``document_frequency.gN.npy``, ``idf.gN.npy``
  and the manifest's ``query_encoder`` entry (distilir_index.idf_query).

Query side: ``"model"`` (default) encodes text queries with the document encoder's model (SPLADE);
``"idf"`` makes the index inference-free: a text query is its distinct tokens weighted by IDF counted
on the indexed texts (:class:`~distilir_index.idf_query.IDFQueryEncoder`), so searching, and loading
the index, need no model and no torch.
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
import scipy.sparse as sp

from distilir_index.base import ArtifactDir, BaseIndex, Hit, ManifestError, read_manifest
from distilir_index.encoders import check_encoder_compatible
from distilir_index.idf_query import IDFQueryEncoder
from distilir_index.loading import DocumentTable
from distilir_index.sparse_encoder import SparseEncoder

__all__ = ["SparseIndex"]

#: Merge the pending segment into the main one when it holds more than this share of its postings.
_CONSOLIDATE_RATIO = 0.25


class SparseIndex(BaseIndex):
    """Exact sparse dot-product retrieval with string ids, metadata filters, add/delete and atomic
    save/load.

    Args:
        encoder: encodes documents on ``add(ids, texts)`` and string queries on ``search``; may be
            None when weights are always given. Its vocabulary becomes the index's term list.
        store_text: keep texts so hits carry them (default True).
        show_progress: progress bars for long adds (None: for >= 1,000 documents).
        query_side: how text queries are encoded: ``"model"`` (the encoder) or ``"idf"`` (their tokens
            weighted by IDF counted on the added texts; module docstring). ``"idf"`` needs texts on every
            add and a tokenizer: the encoder's, or ``tokenizer=`` when documents come as weights.
        tokenizer: for ``query_side="idf"`` without an encoder: a tokenizer.json, model folder or name.

    Example::

        index = SparseIndex(SparseEncoder("splade-tiny"))
        index.add(ids, texts, metadata=metas)
        index.search(["what lowers blood pressure?"], k=10, filters={"year": {"$gte": 2015}})
        index.save("indexes/scifact-splade")
        index = SparseIndex.load("indexes/scifact-splade")      # rebuilds the encoder from the manifest

        # precomputed weights (any learned-sparse model, or hand-made impact scores)
        index = SparseIndex()
        index.add(["d1"], weights=[{"cat": 1.2, "purr": 0.7}])
        index.search([{"cat": 1.0}], k=5)
    """

    kind = "sparse"
    help = "learned sparse vectors (SPLADE) in an inverted index, exact dot-product scores"

    @classmethod
    def from_settings(
        cls,
        *,
        model: Any = None,
        encoder: SparseEncoder | None = None,
        batch_size: int | None = None,
        **settings: Any,
    ) -> SparseIndex:
        """``make_index("sparse", model=NAME, batch_size=32, **SparseIndex keywords)``; ``model`` (a
        hub id, folder or packaged name) builds the SPLADE encoder."""
        if model is not None and encoder is not None:
            raise ValueError("give model= (a name to load) or encoder= (a SparseEncoder), not both")
        if model is not None:
            from distilir_index.sparse_encoder import SparseEncoder

            encoder = SparseEncoder(model, **({"batch_size": batch_size} if batch_size else {}))
        return super().from_settings(encoder=encoder, **settings)

    def __init__(
        self,
        encoder: SparseEncoder | None = None,
        *,
        store_text: bool = True,
        show_progress: bool | None = None,
        query_side: str = "model",
        tokenizer: Any = None,
    ) -> None:
        if query_side not in ("model", "idf"):
            raise ValueError(f"query_side must be 'model' or 'idf', got {query_side!r}")
        if encoder is not None and not callable(getattr(encoder, "encode_queries_csr", None)):
            raise TypeError(
                "encoder must be a distilir_index.sparse_encoder.SparseEncoder (or None), got "
                f"{type(encoder).__name__}; wrap a SPLADE model with SparseEncoder(model)"
            )
        self.encoder = encoder
        self.store_text = bool(store_text)
        self.show_progress = show_progress
        self._docs = DocumentTable(store_text=self.store_text)
        self._terms: list[str] = []
        self._vocab: dict[str, int] = {}
        self._encoder_columns: np.ndarray | None = None  # encoder column -> index term row
        # the inverted index: CSR [terms, positions 0 .. _main.shape[1] - 1], row t = postings of term t
        self._main = sp.csr_matrix((0, 0), dtype=np.float32)
        self._pending: list[sp.csr_matrix] = []  # document-major blocks, positions >= _main.shape[1]
        self._pending_t: sp.csr_matrix | None = None  # cached transpose of the pending segment
        self._query_count = 0
        self._query_terms = 0
        self._lock = threading.RLock()
        if encoder is not None:
            self._attach_encoder(encoder)
        self.query_side = query_side
        #: The IDF query side (statistics kept whenever present); used for text queries when "idf".
        self.query_encoder: IDFQueryEncoder | None = None
        if query_side == "idf":
            if tokenizer is None and encoder is None:
                raise ValueError(
                    "query_side='idf' needs a tokenizer: give the document encoder, or tokenizer=<a "
                    "tokenizer.json, model folder or name> when documents come as weights"
                )
            if tokenizer is None:
                self.query_encoder = IDFQueryEncoder.from_encoder(encoder)
            else:
                size = encoder.vocab_size if encoder is not None else None
                self.query_encoder = IDFQueryEncoder(tokenizer, vocab_size=size)
                if encoder is not None and self.query_encoder.vocabulary != list(encoder.vocabulary):
                    raise ValueError("tokenizer= does not match the encoder's vocabulary; leave it out")
            self._attach_encoder(self.query_encoder)

    # -- vocabulary --------------------------------------------------------------------------------
    def _term_row(self, term: str) -> int:
        row = self._vocab.get(term)
        if row is None:
            row = len(self._terms)
            self._vocab[term] = row
            self._terms.append(term)
        return row

    def _attach_encoder(self, encoder: SparseEncoder) -> None:
        """Add the encoder's vocabulary to the term list and map its columns onto term rows."""
        vocab = encoder.vocabulary
        if not self._terms:
            self._terms = list(vocab)
            self._vocab = {t: i for i, t in enumerate(self._terms)}
            self._encoder_columns = None  # identity
            return
        cols = np.fromiter((self._term_row(t) for t in vocab), dtype=np.int64, count=len(vocab))
        identity = len(cols) <= len(self._terms) and np.array_equal(cols, np.arange(len(cols)))
        self._encoder_columns = None if identity else cols

    def _from_encoder(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """An encoder's CSR output with columns renumbered to this index's term rows."""
        n_terms = len(self._terms)
        if self._encoder_columns is None:
            out = sp.csr_matrix(
                (matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], n_terms)
            )
        else:
            out = sp.csr_matrix(
                (matrix.data, self._encoder_columns[matrix.indices], matrix.indptr),
                shape=(matrix.shape[0], n_terms),
            )
            out.sum_duplicates()
        return out

    def _from_dicts(self, weights: Sequence[Mapping[str, float]], what: str, grow: bool) -> sp.csr_matrix:
        """``{term: weight}`` dicts as CSR rows over the term list. ``grow`` adds unseen terms (for
        documents); otherwise unseen terms are dropped (a query term no document has scores 0)."""
        indptr = [0]
        cols: list[int] = []
        vals: list[float] = []
        for i, w in enumerate(weights):
            if not isinstance(w, Mapping):
                raise TypeError(
                    f"{what}[{i}] must be a mapping of term to weight, got {type(w).__name__}: {w!r}"
                )
            for term, value in w.items():
                if not isinstance(term, str):
                    raise TypeError(f"{what}[{i}] has a non-string term {term!r}; terms must be strings")
                try:
                    v = float(value)
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"{what}[{i}][{term!r}] must be a number, got {value!r}") from exc
                if not math.isfinite(v) or v < 0:
                    raise ValueError(
                        f"{what}[{i}][{term!r}] = {value!r}: weights must be finite and >= 0 "
                        "(impact / SPLADE weights); drop or clip negative weights first"
                    )
                if v == 0:
                    continue
                row = self._term_row(term) if grow else self._vocab.get(term)
                if row is None:
                    continue
                cols.append(row)
                vals.append(v)
            indptr.append(len(cols))
        out = sp.csr_matrix(
            (
                np.asarray(vals, dtype=np.float32),
                np.asarray(cols, dtype=np.int64),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(indptr) - 1, len(self._terms)),
        )
        out.sum_duplicates()
        return out

    # -- description -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def __repr__(self) -> str:
        name = self.encoder.name if self.encoder is not None else None
        return f"SparseIndex(encoder={name!r}, docs={len(self)}, terms={len(self._terms)})"

    def get_config_dict(self) -> dict[str, Any]:
        """Constructor arguments (besides the encoder) that rebuild an equivalent empty index."""
        return {"store_text": self.store_text, "query_side": self.query_side}

    def _n_postings(self) -> int:
        return int(self._main.nnz + sum(b.nnz for b in self._pending))

    def describe(self) -> dict[str, Any]:
        """What the manifest records: settings, the encoder's description, the corpus."""
        settings = self.get_config_dict()
        settings.update(
            {
                "scoring": "dot",
                "dtype": "float32",
                "terms": len(self._terms),
                "positions": self._docs.n_positions,
                "postings": self._n_postings(),
                "vocabulary_source": "encoder" if self.encoder is not None else "documents",
                "library": {"name": "scipy", "version": _scipy_version()},
            }
        )
        encoder = self.encoder.describe() if self.encoder is not None else None
        query = self.query_encoder.describe() if self.query_encoder is not None else None
        return {
            "kind": self.kind,
            "settings": settings,
            "encoder": encoder,
            "query_encoder": query,
            "corpus": self._docs.corpus(),
        }

    def stats(self, queries: Sequence[str | Mapping[str, float]] | None = None) -> dict[str, Any]:
        """Sizes and sparsity: live documents, terms, postings, mean non-zero terms per document, and
        mean non-zero terms per query (of ``queries`` if given, else of all queries searched so far)."""
        with self._lock:
            per_doc = self._terms_per_position()
            live = self._docs.live
            n_live = int(live.sum())
            doc_terms = int(per_doc[live].sum()) if n_live else 0
            if queries is not None:
                q = self._query_matrix(queries)
                n_q, q_terms = q.shape[0], int(q.nnz)
            else:
                n_q, q_terms = self._query_count, self._query_terms
            used_terms = int(np.count_nonzero(np.diff(self._main.indptr))) if not self._pending else None
            return {
                "documents": n_live,
                "deleted": self._docs.n_deleted,
                "terms": len(self._terms),
                "terms_with_postings": used_terms,
                "postings": doc_terms,
                "avg_terms_per_document": doc_terms / n_live if n_live else 0.0,
                "queries": n_q,
                "avg_terms_per_query": q_terms / n_q if n_q else 0.0,
            }

    def _terms_per_position(self) -> np.ndarray:
        counts = np.bincount(self._main.indices, minlength=self._main.shape[1]).astype(np.int64)
        blocks = [np.diff(b.indptr) for b in self._pending]
        return np.concatenate([counts[: self._main.shape[1]], *blocks]) if blocks else counts

    # -- writes ------------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        weights: Sequence[Mapping[str, float]] | None = None,
    ) -> None:
        """Add documents: ``texts`` are encoded with the index's encoder unless ``weights`` (one
        ``{term: weight}`` dict per document, weights >= 0) are passed; texts are then only stored."""
        ids, texts, metas = self._docs.check_new(ids, texts, metadata)
        if weights is None:
            if texts is None:
                raise ValueError(
                    "SparseIndex.add needs texts (with an encoder) or weights=[{term: weight}, ...], "
                    "one per id"
                )
            if self.encoder is None:
                raise ValueError(
                    "this SparseIndex has no encoder, so it cannot encode texts; pass weights=[...] or build "
                    "SparseIndex(SparseEncoder('splade-tiny'))"
                )
        elif isinstance(weights, Mapping) or len(weights) != len(ids):
            got = "a single mapping" if isinstance(weights, Mapping) else f"{len(weights)} weight dicts"
            raise ValueError(
                f"got {len(ids)} ids but {got}; pass weights=[{{term: weight}}, ...], one per id"
            )
        if self.query_encoder is not None and texts is None:
            raise ValueError(
                "this SparseIndex keeps IDF statistics (query_side='idf'), which are counted on document "
                "texts; pass texts with the weights: add(ids, texts, weights=[...])"
            )
        if weights is None:
            assert texts is not None and self.encoder is not None  # checked above
            show = len(texts) >= 1000 if self.show_progress is None else bool(self.show_progress)
            encoded = self.encoder.encode_documents_csr(texts, show_progress=show)
        with self._lock:
            rows = (
                self._from_dicts(weights, "weights", grow=True)
                if weights is not None
                else self._from_encoder(encoded)
            )
            self._docs.add(ids, texts, metas)
            if self.query_encoder is not None:
                self.query_encoder.add_documents(texts)
            self._pending.append(rows)
            self._pending_t = None

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (unknown ids are ignored); returns how many were deleted. Deleted
        documents are never returned; their postings stay until :meth:`compact` (or save)."""
        with self._lock:
            return int(len(self._docs.delete(ids)))

    def consolidate(self) -> None:
        """Merge the pending segment into the main inverted index (an O(postings) column stack)."""
        with self._lock:
            if not self._pending:
                return
            pending_t = self._pending_terms()
            main = self._main_terms()
            self._main = sp.hstack([main, pending_t], format="csr", dtype=np.float32)
            self._pending, self._pending_t = [], None

    def compact(self) -> None:
        """Drop deleted documents' postings and renumber positions (O(postings))."""
        with self._lock:
            self.consolidate()
            if not self._docs.n_deleted:
                return
            keep = self._docs.compact()
            self._main = self._main.tocsc()[:, keep].tocsr()
            self._main.sort_indices()

    def _main_terms(self) -> sp.csr_matrix:
        n_terms = len(self._terms)
        if self._main.shape[0] != n_terms:
            self._main.resize((n_terms, self._main.shape[1]))  # new terms: empty postings lists
        return self._main

    def _pending_terms(self) -> sp.csr_matrix:
        """The pending segment as a term-major CSR ``[terms, pending documents]`` (cached)."""
        n_terms = len(self._terms)
        if self._pending_t is None or self._pending_t.shape[0] != n_terms:
            blocks = []
            for b in self._pending:
                if b.shape[1] != n_terms:
                    b.resize((b.shape[0], n_terms))
                blocks.append(b)
            stacked = sp.vstack(blocks, format="csr", dtype=np.float32)
            self._pending_t = stacked.T.tocsr()
        return self._pending_t

    # -- search ------------------------------------------------------------------------------------
    def _query_matrix(self, queries: Any) -> sp.csr_matrix:
        if isinstance(queries, (str, bytes, Mapping)):
            raise TypeError(
                "queries must be a list (of strings or {term: weight} dicts), got a single "
                f"{type(queries).__name__}; wrap it in a list"
            )
        queries = list(queries)
        text_at = [i for i, q in enumerate(queries) if isinstance(q, str)]
        dict_at = [i for i, q in enumerate(queries) if isinstance(q, Mapping)]
        if len(text_at) + len(dict_at) != len(queries):
            bad = next(q for q in queries if not isinstance(q, (str, Mapping)))
            raise TypeError(
                f"each query must be a string or a {{term: weight}} dict, got {type(bad).__name__}: {bad!r}"
            )
        parts = []
        if text_at:
            encoder = self.query_encoder if self.query_side == "idf" else self.encoder
            if encoder is None:
                raise ValueError(
                    "this SparseIndex has no encoder, so it cannot encode text queries; pass "
                    "{term: weight} dicts, or load it with an encoder: SparseIndex.load(path, encoder=...)"
                )
            parts.append(self._from_encoder(encoder.encode_queries_csr([queries[i] for i in text_at])))
        if dict_at:
            parts.append(self._from_dicts([queries[i] for i in dict_at], "queries", grow=False))
        n_terms = len(self._terms)
        if not parts:
            return sp.csr_matrix((0, n_terms), dtype=np.float32)
        for p in parts:
            if p.shape[1] != n_terms:
                p.resize((p.shape[0], n_terms))
        matrix = sp.vstack(parts, format="csr", dtype=np.float32) if len(parts) > 1 else parts[0]
        if text_at and dict_at:
            order = np.argsort(np.asarray(text_at + dict_at))  # row of each query in the stacked matrix
            matrix = matrix[order]
        return matrix

    def _scores(self, q: sp.csr_matrix) -> sp.csr_matrix:
        """Sparse ``[queries, positions]`` scores: ``q · postings`` over both segments."""
        if q.shape[1] < len(self._terms):  # terms added since q was built: no document weight there
            q = q.copy()
            q.resize((q.shape[0], len(self._terms)))
        if self._pending and self._pending_nnz() > _CONSOLIDATE_RATIO * self._main.nnz:
            self.consolidate()
        parts = []
        if self._main.shape[1]:
            parts.append(q @ self._main_terms())
        if self._pending:
            parts.append(q @ self._pending_terms())
        if not parts:
            return sp.csr_matrix((q.shape[0], 0), dtype=np.float32)
        return (sp.hstack(parts, format="csr") if len(parts) > 1 else parts[0]).tocsr()

    def _pending_nnz(self) -> int:
        return int(sum(b.nnz for b in self._pending))

    def search(
        self,
        queries: Sequence[str | Mapping[str, float]],
        k: int = 10,
        *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` documents per query by exact sparse dot product, best first.

        Args:
            queries: query strings (encoded with the index's encoder) and/or ``{term: weight}`` dicts
                (terms no document has are ignored).
            k: hits per query; ``min(k, documents passing)`` come back (see the module docstring).
            filters / ids: pre-filter by metadata conditions (distilir_index.filters) and/or ids.
        """
        k = self.check_k(k)
        q = self._query_matrix(queries)  # encoding runs outside the lock
        out: list[list[Hit]] = [[] for _ in range(q.shape[0])]
        if q.shape[0] == 0:
            return out
        with self._lock:
            self._query_count += q.shape[0]
            self._query_terms += int(q.nnz)
            docs = self._docs
            allowed = docs.allowed(filters, ids)
            n_pass = len(docs) if allowed is None else len(allowed)
            if n_pass == 0:
                return out
            if allowed is None:
                mask = docs.live
            else:
                mask = np.zeros(docs.n_positions, dtype=bool)
                mask[allowed] = True
            kk = int(min(int(k), n_pass))
            scores = self._scores(q)
            fill: np.ndarray | None = None
            for i in range(q.shape[0]):
                lo, hi = scores.indptr[i], scores.indptr[i + 1]
                pos, val = scores.indices[lo:hi], scores.data[lo:hi]
                keep = mask[pos] & (val > 0)
                pos, val = pos[keep], val[keep]
                if len(pos) > kk:
                    top = np.argpartition(-val, kk - 1)[:kk]
                    tied = val >= val[top].min()  # keep ties at the cut so position breaks them
                    pos, val = pos[tied], val[tied]
                order = np.lexsort((pos, -val))[:kk]
                top_pos, top_val = pos[order].astype(np.int64), val[order]
                if len(top_pos) < kk:  # fewer matches than k: documents with score 0 follow
                    if fill is None:
                        fill = np.flatnonzero(mask)
                    need = kk - len(top_pos)
                    head = fill[: need + len(pos)]
                    extra = head[~np.isin(head, pos)][:need]
                    top_pos = np.concatenate([top_pos, extra])
                    top_val = np.concatenate([top_val, np.zeros(len(extra), dtype=top_val.dtype)])
                out[i] = [docs.hit(int(p), float(s)) for p, s in zip(top_pos, top_val, strict=True)]
        return out

    def score_matrix(self, queries: Sequence[str | Mapping[str, float]]) -> sp.csr_matrix:
        """Raw ``[queries, positions]`` scores (deleted positions included); for checks and analysis."""
        q = self._query_matrix(queries)
        with self._lock:
            return self._scores(q)

    def document_matrix(self) -> sp.csr_matrix:
        """All documents' weights as a CSR ``[positions, terms]`` matrix (a copy; rows follow
        insertion order, deleted positions included until :meth:`compact`)."""
        with self._lock:
            parts = [self._main_terms().T]
            if self._pending:
                parts.append(self._pending_terms().T)
            return sp.vstack(parts, format="csr", dtype=np.float32)

    def document_ids(self) -> list[str | None]:
        """The id at each position (None where deleted): the row labels of :meth:`document_matrix`."""
        with self._lock:
            return list(self._docs.ids)

    @property
    def vocabulary(self) -> list[str]:
        """The term of each postings row (a copy)."""
        return list(self._terms)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index into ``path`` atomically (see distilir_index.base). Compacts first
        (merges pending documents, drops deleted ones). Files of a generation: ``postings.gN.npz``,
        ``vocabulary.gN.json``, ``docs.gN.jsonl``, ``digests.gN.npy`` (module docstring)."""
        with self._lock:
            self.compact()
            described = self.describe()
            main = self._main_terms()
            terms = list(self._terms)
            with ArtifactDir(path, kind=self.kind) as art:

                def write_postings(tmp: Path) -> None:
                    with open(tmp, "wb") as f:
                        sp.save_npz(f, main, compressed=False)

                def write_vocab(tmp: Path) -> None:
                    tmp.write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")

                art.write("postings", "postings.npz", write_postings)
                art.write("vocabulary", "vocabulary.json", write_vocab)
                self._docs.save(art)
                query = self.query_encoder.save(art) if self.query_encoder is not None else None
                art.commit(
                    settings=described["settings"],
                    corpus=described["corpus"],
                    encoder=described["encoder"],
                    extra={"query_encoder": query} if query is not None else None,
                )
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        encoder: SparseEncoder | str | None = None,
        *,
        load_encoder: bool = True,
        show_progress: bool | None = None,
        query_side: str | None = None,
    ) -> SparseIndex:
        """Open an index written by :meth:`save`.

        Args:
            encoder: the query encoder, or a model name/folder to build one with the recorded
                settings. It must match the encoder recorded in the manifest (model fingerprint,
                vocabulary size, pooling, prompts) or EncoderMismatch is raised. When None, it is
                rebuilt from the manifest (SparseEncoder.from_description).
            load_encoder: False to skip loading the model (search with ``{term: weight}`` dicts only).
                An index saved with ``query_side="idf"`` loads no model unless ``encoder`` is given
                (to add documents) or ``query_side="model"`` asks for one.
            query_side: ``"model"`` or ``"idf"`` (default: the one the index was saved with).
        """
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        settings = dict(manifest.get("settings") or {})
        recorded = manifest.get("encoder")
        query_side = query_side or settings.get("query_side", "model")
        if query_side not in ("model", "idf"):
            raise ValueError(f"query_side must be 'model' or 'idf', got {query_side!r}")
        has_idf = (manifest.get("query_encoder") or {}).get("kind") == IDFQueryEncoder.kind
        if query_side == "idf" and not has_idf:
            raise ManifestError(
                f"{path}: the index keeps no IDF statistics, so it cannot search with query_side='idf'; "
                "build it with SparseIndex(encoder, query_side='idf')"
            )
        load_encoder = load_encoder and query_side == "model"
        if isinstance(encoder, (str, os.PathLike)):
            encoder = (
                SparseEncoder.from_description(recorded, model=str(encoder))
                if recorded is not None
                else SparseEncoder(str(encoder))
            )
        if encoder is not None:
            if not callable(getattr(encoder, "describe", None)):
                raise TypeError(
                    f"encoder must be a SparseEncoder, a model name or None, got {type(encoder).__name__}"
                )
            if recorded is not None:
                check_encoder_compatible(recorded, encoder.describe())
        elif recorded is not None and load_encoder:
            encoder = SparseEncoder.from_description(recorded)
            check_encoder_compatible(recorded, encoder.describe())
        files = manifest["files"]
        for role in ("postings", "vocabulary"):
            if role not in files:
                raise ManifestError(f"{path}: the manifest names no {role!r} file; the index is damaged")
        terms = json.loads((path / files["vocabulary"]).read_text(encoding="utf-8"))
        with open(path / files["postings"], "rb") as f:
            main = sp.load_npz(f).tocsr().astype(np.float32, copy=False)
        table = DocumentTable.load(path, manifest)
        if main.shape != (len(terms), table.n_positions):
            raise ManifestError(
                f"{path}: postings matrix has shape {main.shape}, expected ({len(terms)} terms, "
                f"{table.n_positions} documents); the index is damaged"
            )
        index = cls(None, store_text=settings.get("store_text", True), show_progress=show_progress)
        index._terms = list(terms)
        index._vocab = {t: i for i, t in enumerate(index._terms)}
        index._main = main
        index._docs = table
        index.query_side = query_side
        if has_idf:
            index.query_encoder = IDFQueryEncoder.load(path, manifest)
            index._attach_encoder(index.query_encoder)
        if encoder is not None:
            index.encoder = encoder
            index._attach_encoder(encoder)
        return index


def _scipy_version() -> str:
    import scipy

    return scipy.__version__
