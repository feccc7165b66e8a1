"""Margin-MSE: match the student's score margins to the teacher's (Hofstätter et al., 2020)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_scores

__all__ = ["MarginMSELoss"]


class MarginMSELoss(DistillationLoss):
    r"""Margin mean squared error between student and teacher score margins.

    With :math:`e_j = s_j - t_j` (student minus teacher score of candidate :math:`j`), the margin error
    of a pair is :math:`((s_i - s_j) - (t_i - t_j))^2 = (e_i - e_j)^2`:

    * ``mode="pairwise"`` (default, the paper's loss with N-1 negatives): pairs of the positive
      (column 0) with each valid negative,
      :math:`\ell_q = \frac{1}{|V|-1}\sum_{j \in V, j \ne 0} ((s_0 - s_j) - (t_0 - t_j))^2`.
    * ``mode="nway"``: every unordered pair of valid candidates,
      :math:`\ell_q = \binom{|V|}{2}^{-1}\sum_{i<j;\ i,j \in V} ((s_i - s_j) - (t_i - t_j))^2`.
      Each unordered pair is counted once (the ordered pair (j, i) has the same squared error), so
      no positive is needed; it uses all :math:`\binom{N}{2}` margins the teacher provides.

    The loss is the mean of :math:`\ell_q` over queries (:math:`V` = the query's unpadded candidates).
    It is invariant to adding a constant per row to the student or to the teacher scores: only
    differences are matched, so the teacher's scale matters (its margins are matched as they are)
    but its offset does not. Teacher scores are raw (logits, log-likelihoods, similarities).

    Args:
        mode: ``"pairwise"`` (positive vs each negative) or ``"nway"`` (all pairs).

    References:
        - Hofstätter et al., *Improving Efficient Neural Ranking Models with Cross-Architecture
          Knowledge Distillation*, 2020. https://arxiv.org/abs/2010.02666
        - The all-pairs ("n-way") generalisation follows the multi-negative use of Margin-MSE in
          later distillation work (e.g. Santhanam et al., ColBERTv2, https://arxiv.org/abs/2112.01488).

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | column 0 = positive          | raw teacher scores           | False = padding; column 0    |
        | (``pairwise`` mode)          |                              | must be valid in pairwise    |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss_fn = MarginMSELoss()
            student = torch.tensor([[2.0, 1.0, 0.5]], requires_grad=True)
            teacher = torch.tensor([[9.0, 4.0, 1.0]])
            loss = loss_fn(student, teacher)   # ((1 - 5)^2 + (1.5 - 8)^2) / 2
            loss.backward()
    """

    name = "margin-mse"
    citation = """@article{hofstatter2020improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Hofst{\\"a}tter, Sebastian and Althammer, Sophia and Schr{\\"o}der, Michael
            and Sertkan, Mete and Hanbury, Allan},
    journal={arXiv preprint arXiv:2010.02666},
    year={2020}
}"""

    def __init__(self, mode: Literal["pairwise", "nway"] = "pairwise") -> None:
        super().__init__()
        if mode not in ("pairwise", "nway"):
            raise ValueError(f"MarginMSELoss mode must be 'pairwise' or 'nway', got {mode!r}")
        self.mode = mode

    def get_config_dict(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores(
            "MarginMSELoss", student_scores, teacher_scores, mask, first_column_valid=self.mode == "pairwise"
        )
        err = student_scores - teacher
        if mask is not None:
            err = torch.where(mask, err, torch.zeros_like(err))
            valid = mask
        else:
            valid = torch.ones_like(err, dtype=torch.bool)
        if self.mode == "pairwise":
            sq = (err[:, :1] - err[:, 1:]) ** 2
            pair_valid = valid[:, 1:]
        else:
            n = err.shape[1]
            sq = (err.unsqueeze(2) - err.unsqueeze(1)) ** 2
            upper = torch.ones(n, n, dtype=torch.bool, device=err.device).triu(diagonal=1)
            pair_valid = valid.unsqueeze(2) & valid.unsqueeze(1) & upper
        sq = torch.where(pair_valid, sq, torch.zeros_like(sq))
        dims = tuple(range(1, sq.dim()))
        per_query = sq.sum(dim=dims) / pair_valid.sum(dim=dims).to(sq.dtype)
        return per_query.mean()
