"""PLD: Plackett–Luce distillation, a ListMLE weighted by the teacher's confidence (Bassam et al., 2025)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_positive, check_scores, fill_padding
from distilir.losses.list_mle import plackett_luce_nll_terms, teacher_order

__all__ = ["PLDLoss"]


class PLDLoss(DistillationLoss):
    r"""Plackett–Luce Distillation: confidence-weighted likelihood of the teacher-optimal ranking.

    Following Bassam, Zhu & Bian (arXiv:2506.12542), the target is one "teacher-optimal" permutation
    :math:`\pi^*`: the true label first, then the remaining candidates in descending teacher score. In
    retrieval the true label is the positive in column 0 (``positive_first=True``); with
    ``positive_first=False`` all candidates are ordered by the teacher alone. Each step of the
    Plackett–Luce chain is weighted by the teacher's softmax probability of the candidate chosen there,
    :math:`\alpha_k = q^T_{\pi^*_k}` with :math:`q^T = \mathrm{softmax}(t / \tau)`:

    .. math::

        \ell_q = \sum_{k=1}^{|V|} q^T_{\pi^*_k}
                 \left(\log \sum_{l=k}^{|V|} e^{s_{\pi^*_l}} - s_{\pi^*_k}\right),
        \qquad \mathcal{L} = \mathrm{mean}_q\, \ell_q

    Special cases named in the paper: weights :math:`(1, 0, \dots, 0)` give cross entropy on the
    positive; uniform weights give ListMLE (up to a factor). The loss is convex in :math:`s` and
    invariant to adding a constant per row. The teacher's confidence makes the first (positive) step
    dominate when the teacher is sure and spreads the weight down the list when it is not. The paper
    found :math:`\tau = 1` (no softening) best.

    Args:
        temperature: :math:`\tau > 0` of the teacher softmax that gives the weights.
        positive_first: put column 0 first in :math:`\pi^*` regardless of its teacher score (the
            paper's "true label first"); False orders all candidates by the teacher.

    References:
        - Bassam, Zhu, Bian, *PLD: A Choice-Theoretic List-Wise Knowledge Distillation*, 2025.
          https://arxiv.org/abs/2506.12542
        - Xia et al., *Listwise Approach to Learning to Rank: Theory and Algorithm* (ListMLE), ICML 2008.

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | column 0 = positive          | raw teacher logits           | False = padding; column 0    |
        | (``positive_first``)         |                              | must be valid if             |
        |                              |                              | ``positive_first``           |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss = PLDLoss()(student_scores, teacher_scores)
    """

    name = "pld"
    citation = """@article{bassam2025pld,
    title={PLD: A Choice-Theoretic List-Wise Knowledge Distillation},
    author={Bassam, Ejafa and Zhu, Dawei and Bian, Kaigui},
    journal={arXiv preprint arXiv:2506.12542},
    year={2025}
}"""

    def __init__(self, temperature: float = 1.0, positive_first: bool = True) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.positive_first = bool(positive_first)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "positive_first": self.positive_first}

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores(
            "PLDLoss", student_scores, teacher_scores, mask, first_column_valid=self.positive_first
        )
        order = teacher_order(teacher, mask, positive_first=self.positive_first)
        terms, _ = plackett_luce_nll_terms(student_scores, order, mask)
        weights = torch.softmax(fill_padding(teacher / self.temperature, mask), dim=-1).gather(1, order)
        return (weights * terms).sum(dim=-1).mean()
