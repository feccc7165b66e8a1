"""The query side of an inference-free learned sparse retriever: a query is its tokens weighted by IDF.

Inference-free (document-only) sparse retrieval encodes only the documents with a model (a SPLADE
MLM head); a query is never run through a model. Its vector is the IDF-weighted one-hot of the
distinct tokens the document model's own tokenizer gives it (Geng et al., "Towards Competitive Search
Relevance For Inference-Free Learned Sparse Retrievers", arXiv:2411.04403; OpenSearch's
``opensearch-neural-sparse-encoding-doc-*`` models), so query cost is a tokenizer call plus BM25-like
postings traversal, with no model loaded::

    q_t   = idf(t)   if token t occurs in the query (once or more), else 0
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))          (BM25's / Lucene's IDF, natural log)

    s(q, d) = Σ_{t ∈ q} idf(t) · w_d(t)                           (w_d: the document model's weights)

where ``N`` is the number of documents counted and ``df(t)`` the number of them whose text contains
token ``t`` at least once. Tokens are what the document model's ``tokenizers`` tokenizer produces
with ``add_special_tokens=False``, without truncation or padding (a document's whole text counts,
not only the part its encoder reads); every token the tokenizer marks *special* (BERT: ``[PAD]``,
``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``) is dropped on both sides, and so are token ids outside
the model's output vocabulary. Column ``j`` of a query vector is token id ``j``, the same column as
the SPLADE document vector's, so the :class:`~distilir_index.sparse.SparseIndex` scores it against
its postings unchanged. A token no document text contains keeps ``df = 0`` (the largest IDF): SPLADE
expansion may still have put it in documents' vectors.

Statistics are counted when documents are added (``SparseIndex(..., query_side="idf")`` counts the
texts it is given) and stored with the index. Deleting documents does not lower ``df`` or ``N``
(Lucene's document frequencies also count deleted documents until their segment is merged away);
build the index again to recount.

Why not sentence-transformers' ``SparseStaticEmbedding`` (the query module of its inference-free
``Router`` models, 6.x): it computes the same function (token presence × a weight vector, special
tokens not added) but is a ``torch.nn.Module`` - importing it imports torch and transformers, and it
pads each batch into tensors - while this query path must run in a service that never loads torch.
It also takes a fixed weight vector (OpenSearch ships an ``idf.json`` computed on MS MARCO) rather
than counting IDF on the indexed corpus. :meth:`IDFQueryEncoder.idf_dict` writes the IDF in its
``idf.json`` form (``SparseStaticEmbedding.from_json``), and a test checks both give the same vectors.

On disk (files of one index generation, named in the manifest; see distilir_index.base):

* ``query_tokenizer.gN.json`` -- the tokenizer, ``tokenizers.Tokenizer.to_str()`` (truncation and
  padding off); ``tokenizers.Tokenizer.from_file`` reads it;
* ``document_frequency.gN.npy`` -- int64 ``[vocab_size]``: ``df`` per token id (kept for adds);
* ``idf.gN.npy`` -- float32 ``[vocab_size]``: the query weight of each token id, the formula above;
* the manifest's ``query_encoder`` entry is :meth:`IDFQueryEncoder.describe` (``kind: "idf"``, the
  formula, ``documents`` = N, the vocabulary size, the tokenizer's sha256, the dropped tokens).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from distilir_index.base import ArtifactDir, ManifestError

__all__ = ["IDF_FORMULA", "IDFQueryEncoder"]

#: The query weight of a token, as recorded in manifests.
IDF_FORMULA = "ln(1 + (N - df + 0.5) / (df + 0.5))"


class IDFQueryEncoder:
    """Queries as IDF-weighted one-hot vectors over a tokenizer's vocabulary (module docstring).

    Args:
        tokenizer: a ``tokenizers.Tokenizer``, a ``tokenizer.json`` path, a model folder holding one,
            or a packaged model name (``"splade-tiny"``); the document model's own tokenizer.
        vocab_size: columns of the query vectors: the document model's output dimensions (default:
            the tokenizer's vocabulary, added tokens included).
        document_frequency / documents: counts to start from (``df`` per token id, and ``N``); by
            default none - add documents with :meth:`add_documents`.

    Example::

        enc = IDFQueryEncoder("splade-tiny")
        enc.add_documents(corpus_texts)
        enc.encode_queries(["what causes tides"])[0]     # {"tides": 7.9, "causes": 3.1, "what": 1.2}
    """

    kind = "idf"
    help = "a query is its distinct tokens weighted by corpus IDF; no query model (inference-free)"

    def __init__(
        self,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        document_frequency: np.ndarray | None = None,
        documents: int = 0,
    ) -> None:
        self._tokenizer = _as_tokenizer(tokenizer)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        n = self._tokenizer.get_vocab_size(with_added_tokens=True) if vocab_size is None else vocab_size
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"vocab_size must be a positive number of columns, got {vocab_size!r}")
        self.vocab_size = int(n)
        self.special_tokens = sorted(
            (int(i), t.content)
            for i, t in self._tokenizer.get_added_tokens_decoder().items()
            if t.special and int(i) < self.vocab_size
        )
        self._keep = np.ones(self.vocab_size, dtype=bool)  # token ids that may carry weight
        self._keep[[i for i, _ in self.special_tokens]] = False
        if document_frequency is None:
            df = np.zeros(self.vocab_size, dtype=np.int64)
        else:
            df = np.asarray(document_frequency)
            if df.shape != (self.vocab_size,) or not np.issubdtype(df.dtype, np.integer):
                raise ValueError(
                    f"document_frequency must be integer counts of shape ({self.vocab_size},), got "
                    f"{df.dtype} {df.shape}"
                )
            df = df.astype(np.int64)
        if isinstance(documents, bool) or int(documents) < 0 or (len(df) and df.max(initial=0) > documents):
            raise ValueError(
                f"documents must be a count >= every document frequency (max {int(df.max(initial=0))}), "
                f"got {documents!r}"
            )
        self._df = df
        self._n = int(documents)
        self._idf: np.ndarray | None = None
        self._vocabulary: list[str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_encoder(cls, encoder: Any) -> IDFQueryEncoder:
        """The IDF query side of a :class:`~distilir_index.sparse_encoder.SparseEncoder`: its model's
        fast tokenizer, its output dimensions; raises if token ids are not its output columns."""
        hf = getattr(getattr(encoder, "model", None), "tokenizer", None)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"the encoder {getattr(encoder, 'name', encoder)!r} has no fast (tokenizers) tokenizer; "
                "the IDF query side needs one: IDFQueryEncoder('folder/tokenizer.json')"
            )
        out = cls(backend.to_str(), vocab_size=encoder.vocab_size)
        if out.vocabulary != list(encoder.vocabulary):
            raise ValueError(
                f"the tokenizer's token ids are not the output dimensions of {encoder.name!r} (vocabularies "
                "differ), so IDF-weighted tokens cannot be scored against its document vectors"
            )
        return out

    # -- vocabulary and statistics -------------------------------------------------------------------
    @property
    def vocabulary(self) -> list[str]:
        """Term of each column (token id), made unique as SparseEncoder.vocabulary does."""
        if self._vocabulary is None:
            seen: set[str] = set()
            vocab = []
            for j in range(self.vocab_size):
                tok = self._tokenizer.id_to_token(j)
                term = tok if isinstance(tok, str) and tok not in seen else f"[dim{j}]"
                seen.add(term)
                vocab.append(term)
            self._vocabulary = vocab
        return self._vocabulary

    @property
    def documents(self) -> int:
        """``N``: documents counted so far."""
        return self._n

    @property
    def document_frequency(self) -> np.ndarray:
        """``df`` per token id (int64 ``[vocab_size]``, a copy)."""
        with self._lock:
            return self._df.copy()

    @property
    def idf(self) -> np.ndarray:
        """The query weight of each token id (float32 ``[vocab_size]``, read-only); 0 for dropped ids."""
        with self._lock:
            if self._idf is None:
                df = self._df.astype(np.float64)
                idf = np.log1p((self._n - df + 0.5) / (df + 0.5)).astype(np.float32)
                idf[~self._keep] = 0.0
                idf.flags.writeable = False
                self._idf = idf
            return self._idf

    def idf_dict(self) -> dict[str, float]:
        """``{token: idf}`` for every weighted token: the ``idf.json`` that sentence-transformers'
        ``SparseStaticEmbedding.from_json`` (and OpenSearch's doc-only models) read."""
        idf, vocab = self.idf, self.vocabulary
        return {vocab[j]: float(idf[j]) for j in np.flatnonzero(idf)}

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The distinct kept token ids of each text, sorted (int64)."""
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got a single string; wrap it in a list")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is a {type(t).__name__}, expected str")
        if len(texts) == 1:  # one query: skip encode_batch's thread-pool round trip
            encodings = [self._tokenizer.encode(texts[0], add_special_tokens=False)]
        else:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        out = []
        for enc in encodings:
            ids = np.unique(np.asarray(enc.ids, dtype=np.int64))
            ids = ids[ids < self.vocab_size]
            out.append(ids[self._keep[ids]])
        return out

    def add_documents(self, texts: Sequence[str]) -> None:
        """Count ``texts`` into ``N`` and ``df`` (each distinct token once per text)."""
        ids = self.token_ids(texts)
        counts = np.bincount(
            np.concatenate(ids) if ids else np.zeros(0, np.int64), minlength=self.vocab_size
        ).astype(np.int64)
        with self._lock:
            self._df += counts
            self._n += len(ids)
            self._idf = None

    # -- encoding ------------------------------------------------------------------------------------
    def encode_queries_csr(self, queries: Sequence[str], show_progress: bool = False) -> sp.csr_matrix:
        """Queries as a float32 CSR ``[len(queries), vocab_size]``: row i = idf on the tokens of query i."""
        ids = self.token_ids(queries)
        idf = self.idf
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in ids], out=indptr[1:])
        indices = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        data = idf[indices]
        matrix = sp.csr_matrix((data, indices, indptr), shape=(len(ids), self.vocab_size))
        matrix.eliminate_zeros()
        return matrix

    def encode_queries(self, queries: Sequence[str], show_progress: bool = False) -> list[dict[str, float]]:
        """One ``{term: idf}`` dict per query, heaviest term first."""
        from distilir_index.sparse_encoder import term_dicts  # torch-free: models load lazily

        return term_dicts(self.encode_queries_csr(queries), self.vocabulary)

    # -- self-description and persistence -----------------------------------------------------------
    def tokenizer_json(self) -> str:
        return self._tokenizer.to_str()

    def get_config_dict(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size}

    def describe(self) -> dict[str, Any]:
        """The manifest's ``query_encoder`` entry."""
        import tokenizers

        return {
            "kind": self.kind,
            "formula": IDF_FORMULA,
            "weights": "presence: each distinct query token gets its idf once",
            "documents": self._n,
            "vocab_size": self.vocab_size,
            "tokenizer_sha256": sha256(self.tokenizer_json().encode()).hexdigest(),
            "special_tokens_dropped": [t for _, t in self.special_tokens],
            "add_special_tokens": False,
            "truncation": None,
            "library": {"name": "tokenizers", "version": tokenizers.__version__},
            "model": None,
        }

    def save(self, art: ArtifactDir) -> dict[str, Any]:
        """Write the tokenizer, ``df`` and IDF into the generation ``art`` is writing; returns
        :meth:`describe` for the manifest (call ``art.commit(extra={"query_encoder": ...})``)."""
        with self._lock:
            df, n = self._df.copy(), self._n
        idf = self.idf
        text = self.tokenizer_json()

        def save_npy(array: np.ndarray):
            def write(tmp: Path) -> None:
                with open(tmp, "wb") as f:
                    np.save(f, array)

            return write

        art.write(
            "query_tokenizer", "query_tokenizer.json", lambda tmp: tmp.write_text(text, encoding="utf-8")
        )
        art.write("document_frequency", "document_frequency.npy", save_npy(df))
        art.write("idf", "idf.npy", save_npy(np.asarray(idf)))
        described = self.describe()
        described["documents"] = n
        return described

    @classmethod
    def load(cls, path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> IDFQueryEncoder:
        """Read what :meth:`save` wrote in the generation ``manifest`` names; checks the stored IDF
        against the formula over the stored counts."""
        path = Path(path)
        files = manifest.get("files", {})
        described = manifest.get("query_encoder") or {}
        if described.get("kind") != cls.kind:
            raise ManifestError(
                f"{path}: the manifest records no IDF query side (query_encoder: {described or None!r}); "
                "build the index with query_side='idf'"
            )
        for role in ("query_tokenizer", "document_frequency", "idf"):
            if role not in files:
                raise ManifestError(f"{path}: the manifest names no {role!r} file; the index is damaged")
        out = cls(
            str(path / files["query_tokenizer"]),
            vocab_size=int(described["vocab_size"]),
            document_frequency=np.load(path / files["document_frequency"]),
            documents=int(described["documents"]),
        )
        stored = np.load(path / files["idf"])
        if stored.shape != out.idf.shape or not np.allclose(stored, out.idf, rtol=1e-6, atol=1e-7):
            raise ManifestError(
                f"{path}: {files['idf']} does not equal {IDF_FORMULA} over {files['document_frequency']} "
                f"and N={out.documents}; the index is damaged (rebuild it)"
            )
        if described.get("tokenizer_sha256") not in (None, sha256(out.tokenizer_json().encode()).hexdigest()):
            raise ManifestError(f"{path}: {files['query_tokenizer']} is not the tokenizer the index recorded")
        return out

    def __repr__(self) -> str:
        return f"IDFQueryEncoder(vocab_size={self.vocab_size}, documents={self._n})"


def _as_tokenizer(source: Any) -> Any:
    """A ``tokenizers.Tokenizer`` from a Tokenizer, its JSON text, a ``tokenizer.json`` path, a folder
    holding one, or a packaged model name (distilir_index.models)."""
    from tokenizers import Tokenizer

    if isinstance(source, Tokenizer):
        return Tokenizer.from_str(source.to_str())  # a copy: truncation/padding are switched off
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(
            f"tokenizer must be a tokenizers.Tokenizer, a tokenizer.json path, a model folder or name; "
            f"got {type(source).__name__}"
        )
    if source.lstrip().startswith("{"):
        return Tokenizer.from_str(source)
    path = Path(source)
    if not path.exists():
        from distilir_index.models import resolve_model

        path = Path(resolve_model(source))
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no tokenizer.json at {path}: the IDF query side needs the document model's fast tokenizer"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for bad files
        raise ValueError(f"{path} is not a tokenizers tokenizer.json ({exc})") from exc
