"""ListNet: cross entropy between the teacher's and the student's top-one probabilities (Cao et al., 2007)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_positive, check_scores, fill_padding

__all__ = ["ListNetLoss"]


class ListNetLoss(DistillationLoss):
    r"""Cross entropy between top-one probabilities of teacher and student.

    .. math::

        \ell_q = -\sum_{j \in V} \mathrm{softmax}(t/\tau)_j \,\log \mathrm{softmax}(s/\tau)_j,
        \qquad \mathcal{L} = \mathrm{mean}_q\, \ell_q

    The top-one probability of candidate :math:`j` is the chance it is ranked first under the
    Plackett–Luce model with worths :math:`e^{s/\tau}`, which is the softmax. ListNet differs from
    :class:`~distilir.losses.ListwiseKLLoss` (same temperature, no scaling) by the teacher's entropy, a
    constant, so both have the same gradients; ListNet's value does not reach 0 at the optimum.

    Args:
        temperature: :math:`\tau > 0`, divides both student and teacher scores.

    References:
        - Cao et al., *Learning to Rank: From Pairwise Approach to Listwise Approach*, ICML 2007.
          https://www.microsoft.com/en-us/research/publication/learning-to-rank-from-pairwise-approach-to-listwise-approach/

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | any order                    | raw teacher logits           | False = padding              |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss = ListNetLoss(temperature=1.0)(student_scores, teacher_scores)
    """

    name = "listnet"
    citation = """@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th International Conference on Machine Learning},
    pages={129--136},
    year={2007}
}"""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("ListNetLoss", student_scores, teacher_scores, mask)
        log_p_s = torch.log_softmax(fill_padding(student_scores / self.temperature, mask), dim=-1)
        p_t = torch.softmax(fill_padding(teacher / self.temperature, mask), dim=-1)
        return -(p_t * log_p_s).sum(dim=-1).mean()
