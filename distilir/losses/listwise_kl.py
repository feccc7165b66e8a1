"""Listwise KL divergence between the teacher's and the student's softmax over a candidate list."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_positive, check_scores, fill_padding

__all__ = ["ListwiseKLLoss"]


class ListwiseKLLoss(DistillationLoss):
    r"""KL(teacher || student) over each query's candidates, averaged over queries.

    .. math::

        p^T = \mathrm{softmax}(t / \tau_t), \qquad p^S = \mathrm{softmax}(s / \tau_s), \qquad
        \ell_q = \sum_{j \in V} p^T_j \left(\log p^T_j - \log p^S_j\right)

    The loss is :math:`c \cdot \mathrm{mean}_q \ell_q` with :math:`c = \tau_s^2` when
    ``scale_by_temperature`` is True (Hinton et al.: the gradients of a softened KL shrink as
    :math:`1/\tau^2`, the factor keeps their size comparable across temperatures; the same choice as
    sentence-transformers' ``DistillKLDivLoss``), else :math:`c = 1`. With the default temperatures of
    1.0 the factor is 1 either way.

    The loss is invariant to adding a constant to a row of student or teacher scores (softmax is).
    Teacher scores are raw logits / log-likelihoods; pick ``teacher_temperature`` to match their spread
    (a cross-encoder's logits spanning 10 units make an almost one-hot target at temperature 1).

    Args:
        student_temperature: :math:`\tau_s > 0`, divides the student scores.
        teacher_temperature: :math:`\tau_t > 0`, divides the teacher scores.
        scale_by_temperature: multiply the loss by :math:`\tau_s^2` (Hinton et al.).

    References:
        - Hinton, Vinyals, Dean, *Distilling the Knowledge in a Neural Network*, 2015.
          https://arxiv.org/abs/1503.02531
        - Listwise KL distillation from a cross-encoder in retrieval: Santhanam et al., *ColBERTv2*,
          2021. https://arxiv.org/abs/2112.01488

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | any order                    | raw teacher logits           | False = padding              |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss_fn = ListwiseKLLoss(teacher_temperature=2.0)
            loss = loss_fn(student_scores, teacher_scores, mask)
    """

    name = "kl"
    citation = """@article{hinton2015distilling,
    title={Distilling the Knowledge in a Neural Network},
    author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
    journal={arXiv preprint arXiv:1503.02531},
    year={2015}
}"""

    def __init__(
        self,
        student_temperature: float = 1.0,
        teacher_temperature: float = 1.0,
        scale_by_temperature: bool = True,
    ) -> None:
        super().__init__()
        self.student_temperature = check_positive("student_temperature", student_temperature)
        self.teacher_temperature = check_positive("teacher_temperature", teacher_temperature)
        self.scale_by_temperature = bool(scale_by_temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "scale_by_temperature": self.scale_by_temperature,
        }

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("ListwiseKLLoss", student_scores, teacher_scores, mask)
        log_p_s = torch.log_softmax(fill_padding(student_scores / self.student_temperature, mask), dim=-1)
        log_p_t = torch.log_softmax(fill_padding(teacher / self.teacher_temperature, mask), dim=-1)
        # Padded entries have p_t == 0 exactly and finite logs, so they add exactly 0.
        per_query = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
        loss = per_query.mean()
        if self.scale_by_temperature:
            loss = loss * self.student_temperature**2
        return loss
