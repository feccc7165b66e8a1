"""A new loss in one module: the pairwise hinge of the teacher's order.

.. math:: \\mathcal{L} = \\frac{1}{|P|} \\sum_{(i, j) \\in P} \\max(0, m - (s_i - s_j)),
   \\quad P = \\{(i, j): t_i > t_j\\}

(Herbrich et al., "Large margin rank boundaries for ordinal regression", 2000). Registered in the test
with one line: ``LOSSES.register("hinge", "tests.distilir.extensions.hinge_loss:PairwiseHingeLoss")``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_scores


class PairwiseHingeLoss(DistillationLoss):
    name = "hinge"
    help = "pairwise hinge on the pairs the teacher orders: max(0, margin - (s_i - s_j))"
    citation = (
        "@inproceedings{herbrich2000large, title={Large margin rank boundaries for ordinal regression}}"
    )

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("PairwiseHingeLoss", student_scores, teacher_scores, mask)
        if mask is None:
            mask = torch.ones_like(student_scores, dtype=torch.bool)
        pairs = (teacher[:, :, None] > teacher[:, None, :]) & mask[:, :, None] & mask[:, None, :]
        gaps = student_scores[:, :, None] - student_scores[:, None, :]
        hinge = torch.clamp(self.margin - gaps, min=0.0) * pairs
        per_query = hinge.sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp(min=1)
        return per_query.mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"margin": self.margin}
