"""SPLADE student over a sentence-transformers ``SparseEncoder``, with the FLOPS regulariser."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from distilir.students.base import StudentError
from distilir.students.embedding import EmbeddingStudent
from distilir.students.flops import FlopsSchedule, flops
from distilir.students.models import load_student_model

__all__ = ["SpladeStudent"]


class SpladeStudent(EmbeddingStudent):
    r"""A learned sparse (SPLADE) student: :math:`s(q, d) = \langle w(q), w(d) \rangle` with
    :math:`w(x)_j = \max_t \log(1 + \mathrm{ReLU}(\mathrm{MLM}(x)_{t j}))` over the vocabulary.

    The vectors come from the model's own forward pass (``SparseEncoder`` modules, same prompts and
    ``task`` as ``encode_query`` / ``encode_document``), as dense [n, vocab] tensors with gradients.
    ``forward_scores`` returns, beside the scores, the unweighted FLOPS regularisers of the batch's
    query and document vectors (``regularization["flops_query"]``, ``["flops_doc"]``, see
    :func:`distilir.students.flops.flops`) and ``regularization_loss`` =
    :math:`\lambda_q(t)\,\ell^q_{FLOPS} + \lambda_d(t)\,\ell^d_{FLOPS}` with the weights ramped up
    quadratically over ``flops_warmup_steps`` (call :meth:`set_progress` each optimiser step). The
    trainer adds ``regularization_loss`` to the distillation loss, or weighs the raw terms itself.

    ``encode`` of a ``SparseEncoder`` may prune to ``max_active_dims``; training scores are not pruned.

    Memory: the MLM logits are [n, seq_len, vocab]; lower ``max_length`` or set the model's
    ``splade_pooling_chunk_size`` for long inputs.

    Args:
        model: packaged name (``splade-tiny``), folder, hub id, or a loaded ``SparseEncoder``.
        flops_query: :math:`\lambda_q`, the full weight of the query FLOPS term.
        flops_doc: :math:`\lambda_d`, the full weight of the document FLOPS term.
        flops_warmup_steps: steps of the quadratic warm-up of both weights (0 = none).
        max_length: truncation in tokens (None keeps the model's setting).
        query_prompt / document_prompt: as for :class:`~distilir.students.BiEncoderStudent`.
        device: torch device to load the model on.

    References:
        - Formal, Piwowarski, Clinchant, *SPLADE: Sparse Lexical and Expansion Model for First Stage
          Ranking*, SIGIR 2021. https://arxiv.org/abs/2107.05720 (FLOPS weights with quadratic warm-up)
        - Paria et al., *Minimizing FLOPs to Learn Efficient Sparse Representations*, ICLR 2020.
          https://arxiv.org/abs/2004.05665
    """

    kind = "splade"
    help = "learned sparse (SPLADE) over a sentence-transformers SparseEncoder, with the FLOPS regulariser"
    loads_with = "SparseEncoder"

    @classmethod
    def training_kwargs(cls, *, flops: Any = None, seed: int | None = None) -> dict[str, Any]:
        if flops is None:
            return {}
        return {
            "flops_query": flops.query_weight,
            "flops_doc": flops.document_weight,
            "flops_warmup_steps": flops.warmup_steps,
        }

    def __init__(
        self,
        model: Any = "splade-tiny",
        flops_query: float = 5e-4,
        flops_doc: float = 5e-4,
        flops_warmup_steps: int = 0,
        max_length: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__()
        from sentence_transformers import SparseEncoder

        self.schedule = FlopsSchedule(float(flops_query), float(flops_doc), int(flops_warmup_steps))
        self.model, self.model_name = load_student_model(model, SparseEncoder, device=device)
        self._set_max_length(max_length)
        self._setup_prompts(query_prompt, document_prompt)
        self.step = 0

    @contextmanager
    def _pooling_out_of_place(self) -> Iterator[None]:
        """``SpladePooling`` applies ``relu_`` / ``log1p_`` in place outside training mode, which autograd
        cannot differentiate; the values are the same either way, so while gradients are recorded its
        out-of-place (training-mode) branch is used. Other modules keep their mode (dropout stays off
        in eval)."""
        switched = []
        if torch.is_grad_enabled():
            for module in self.model.modules():
                if type(module).__name__ == "SpladePooling" and not module.training:
                    module.training = True
                    switched.append(module)
        try:
            yield
        finally:
            for module in switched:
                module.training = False

    def _embed(self, texts: Sequence[str], task: str) -> Tensor:
        with self._pooling_out_of_place():
            return super()._embed(texts, task)

    def set_progress(self, step: int) -> tuple[float, float]:
        """Set the optimiser step of the FLOPS warm-up; return the (query, document) weights now in use."""
        if int(step) < 0:
            raise StudentError(f"step must be >= 0, got {step}")
        self.step = int(step)
        return self.schedule.weights_at(self.step)

    @property
    def flops_weights(self) -> tuple[float, float]:
        return self.schedule.weights_at(self.step)

    def log_values(self) -> dict[str, Any]:
        return {"flops_weights": list(self.flops_weights)}

    def _regularize(self, query_emb: Tensor, doc_emb: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        terms = {"flops_query": flops(query_emb), "flops_doc": flops(doc_emb)}
        weight_q, weight_d = self.flops_weights
        return terms, weight_q * terms["flops_query"] + weight_d * terms["flops_doc"]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "flops_query": self.schedule.query_weight,
            "flops_doc": self.schedule.document_weight,
            "flops_warmup_steps": self.schedule.warmup_steps,
            "max_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
            **self._prompt_config(),
        }
