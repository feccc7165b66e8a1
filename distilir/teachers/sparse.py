"""SPLADE teacher: learned sparse vectors from a sentence-transformers ``SparseEncoder``.

SPLADE (Formal et al. 2021, "SPLADE v2", arXiv:2109.10086) maps a text to a vocabulary-sized vector

    w_j(text) = max_t log(1 + relu(logit_{t,j}))        (max over the text's tokens t)

from a masked-language-model head, and scores ``score(q, d) = <w(q), w(d)>`` (inner product of the
two sparse vectors, ``score_type="similarity"``). The offline default is ``"splade-tiny"`` (a 2-layer
BERT distilled from a MiniLM cross-encoder; see ``/work/shared/MODELS.md``).

Two implementation notes:

* ``log(1 + relu(x))`` is non-decreasing, so ``max_t log1p(relu(x_t)) == log1p(relu(max_t x_t))``
  exactly. sentence-transformers' ``SpladePooling`` copies the (batch x tokens x vocabulary) logits,
  applies ``relu`` and ``log1p`` to every cell, then takes the max; at inference this module masks
  the logits in place, takes the max first and applies ``relu``/``log1p`` to one vector per text.
  Same numbers (checked in the tests); measured on this 2-core machine (1 thread, splade-tiny,
  batch 16): 8.9 -> 13.0 SciFact abstracts and 46 -> 67 300-character passages per CPU-second.
  Training and sum pooling keep the library's code path. The implementation is the index encoder's
  (``distilir_index.sparse_encoder.use_fast_pooling``), written once.
* Document vectors are cached sparse (indices + values) by the sha256 of the text, so a document
  that is a candidate of many queries is encoded once (on disk too with ``cache_dir``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from distilir_index.sparse_encoder import use_fast_pooling

from distilir.teachers.base import (
    BaseTeacher,
    TeacherError,
    describe_model,
    load_teacher_model,
)
from distilir.teachers.embedding_cache import EmbeddingTeacherMixin, resolve_cache_dir

__all__ = ["SparseTeacher", "load_sparse_encoder"]


class SparseTeacher(EmbeddingTeacherMixin, BaseTeacher):
    """Scores documents by the inner product of SPLADE vectors.

    Args:
        model: ``"splade-tiny"`` (packaged), a hub id / folder of a SPLADE model (a sentence-transformers
            ``SparseEncoder`` folder or a plain masked-LM folder), or a built ``SparseEncoder``.
        batch_size: texts per forward pass.
        max_length: truncate texts to this many tokens (``None``: the model's limit).
        device: torch device (``None``: sentence-transformers picks).
        num_threads: torch threads while encoding (``None``: ``sensible_threads()``, the free cores).
            Runtime only.
        show_progress: tqdm bars while encoding.
        cache_dir: root of the on-disk document cache, one folder per model
            (:mod:`distilir_index.embedding_cache`); ``None``: ``$DISTILIR_EMBEDDING_CACHE``, else
            ``$DISTILIR_CACHE/embeddings``; ``"off"``: memory only. Runtime only.
    """

    kind = "splade"
    help = "a SPLADE model (SparseEncoder) hub id, folder or packaged name"
    example = "splade:splade-tiny"
    default_target = "splade-tiny"
    score_type = "similarity"
    cache_kind = "sparse"

    def __init__(
        self,
        model: Any = "splade-tiny",
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        *,
        num_threads: int | None = None,
        show_progress: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TeacherError(f"batch_size must be a positive int, got {batch_size!r}; try 32")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise TeacherError(f"max_length must be an int >= 8 or None, got {max_length!r}")
        self._model, self._identity = load_sparse_encoder(model, device=device)
        if max_length is not None:
            self._model.max_seq_length = max_length
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.name = f"splade:{self._identity['name'] or 'in-memory'}"
        self.cache_dir = resolve_cache_dir(cache_dir)

    @property
    def model(self) -> Any:
        return self._model

    def _similarities(self, query: tuple[np.ndarray, np.ndarray], docs: Sequence[Any]) -> list[float]:
        q_idx, q_val = query
        scores = []
        for d_idx, d_val in docs:
            # both index arrays are sorted and unique: the dot product over shared vocabulary ids
            _, qi, di = np.intersect1d(q_idx, d_idx, assume_unique=True, return_indices=True)
            scores.append(float(np.dot(q_val[qi].astype(np.float64), d_val[di].astype(np.float64))))
        return scores

    def encode(self, texts: Sequence[str], *, is_query: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sparse vectors as ``(vocabulary indices, weights)`` per text (not cached)."""
        method = "encode_query" if is_query else "encode_document"
        emb = getattr(self._model, method)(
            list(texts),
            batch_size=self.batch_size,
            convert_to_sparse_tensor=True,
            show_progress_bar=self.show_progress,
        )
        emb = emb.coalesce()
        rows, cols = emb.indices().cpu().numpy()
        vals = emb.values().float().cpu().numpy()
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        bounds = np.searchsorted(rows, np.arange(len(texts) + 1))
        return [(cols[a:b].astype(np.int64), vals[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _encode_queries(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.encode(texts, is_query=True)

    def _encode_documents(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.encode(texts, is_query=False)

    def _document_cache_settings(self) -> dict[str, Any]:
        config = self.get_config_dict()
        dtype = "" if config["dtype"] == "float32" else f"@{config['dtype']}"
        fingerprint = self._identity.get("fingerprint")
        return {
            "fingerprint": f"{fingerprint}{dtype}" if fingerprint else None,
            "max_length": config["max_length"],
            "prompt": None,
            "normalize": False,
        }

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "kind": "splade",
            "model": self._identity,
            "max_length": int(self._model.max_seq_length) if self._model.max_seq_length else None,
            "pooling": "max(log1p(relu(logits)))",
            "dtype": str(next(self._model.parameters()).dtype).removeprefix("torch."),
            "score_type": self.score_type,
        }


def load_sparse_encoder(
    model: Any = "splade-tiny", *, device: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Build a ``SparseEncoder`` from a name, folder or object; returns (model, identity dict).

    A folder with ``modules.json`` is loaded as saved; a plain masked-LM folder (the packaged
    splade-tiny) is wrapped as ``Transformer(fill-mask) -> SpladePooling("max")``. Max pooling then
    uses the max-first form described in the module docstring."""
    from distilir_index.models import resolve_model
    from sentence_transformers import SparseEncoder

    if isinstance(model, SparseEncoder):
        # A caller's object is used as is (its modules are not swapped: it may be saved later).
        return load_teacher_model(model, SparseEncoder, device=device)
    folder = Path(resolve_model(str(model))) if isinstance(model, (str, os.PathLike)) else None
    if folder is not None and folder.is_dir() and not (folder / "modules.json").is_file():
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.sparse_encoder.modules import SpladePooling

        modules = [
            Transformer(str(folder), transformer_task="fill-mask"),
            SpladePooling(pooling_strategy="max"),
        ]
        encoder = SparseEncoder(modules=modules, device=device)
        identity = describe_model(str(model), str(folder), encoder)
    else:
        encoder, identity = load_teacher_model(
            model, SparseEncoder, device=device, example="SparseTeacher('splade-tiny')"
        )
    use_fast_pooling(encoder)  # the index encoder's max-first pooling (distilir_index.sparse_encoder)
    return encoder, identity
