"""The FLOPS regulariser of sparse representations and the quadratic warm-up of its weight."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["FlopsSchedule", "flops", "quadratic_warmup"]


def flops(embeddings: Tensor) -> Tensor:
    r"""FLOPS regulariser of a batch of sparse vectors :math:`w \in \mathbb{R}^{n \times V}`:

    .. math::

        \ell_{FLOPS} = \sum_{j=1}^{V} \Big(\frac{1}{n}\sum_{i=1}^{n} |w_{ij}|\Big)^2

    a smooth relaxation of the expected number of floating-point operations of a sparse dot product
    (it pushes every vocabulary term to be rarely active across the batch).

    References:
        - Paria et al., *Minimizing FLOPs to Learn Efficient Sparse Representations*, ICLR 2020.
          https://arxiv.org/abs/2004.05665
        - Formal et al., *SPLADE: Sparse Lexical and Expansion Model for First Stage Ranking*, 2021.
          https://arxiv.org/abs/2107.05720
    """
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"flops expects a non-empty [n, vocab] tensor, got shape {tuple(embeddings.shape)}")
    return (embeddings.abs().mean(dim=0) ** 2).sum()


def quadratic_warmup(step: int, warmup_steps: int) -> float:
    r"""Factor :math:`\min(1, \text{step} / T)^2` that ramps a regulariser's weight from 0 to its full value
    over the first :math:`T` optimiser steps (SPLADE: the model first learns to rank, then to be
    sparse). :math:`T = 0` means no warm-up (factor 1)."""
    if warmup_steps < 0 or step < 0:
        raise ValueError(f"step and warmup_steps must be >= 0, got step={step}, warmup_steps={warmup_steps}")
    if warmup_steps == 0:
        return 1.0
    return min(1.0, step / warmup_steps) ** 2


@dataclass(frozen=True)
class FlopsSchedule:
    """Weights :math:`\\lambda_q(t), \\lambda_d(t)` of the query and document FLOPS terms at step ``t``."""

    query_weight: float = 5e-4
    document_weight: float = 5e-4
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("query_weight", "document_weight"):
            value = getattr(self, name)
            if not (value >= 0 and value != float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def weights_at(self, step: int) -> tuple[float, float]:
        factor = quadratic_warmup(step, self.warmup_steps)
        return self.query_weight * factor, self.document_weight * factor
