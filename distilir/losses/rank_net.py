"""RankNet on the pairs the teacher orders (Burges et al., 2005)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from distilir.losses.base import DistillationLoss, check_positive, check_scores

__all__ = ["RankNetLoss"]


class RankNetLoss(DistillationLoss):
    r"""Pairwise logistic loss on every pair of candidates the teacher orders.

    For each query, :math:`P = \{(i, j) : i, j \in V,\ t_i > t_j\}` are the pairs the teacher ranks
    strictly (ties carry no order and are skipped). Each pair costs the negative log-likelihood that the
    student orders it the same way:

    .. math::

        \ell_q = \frac{1}{|P|} \sum_{(i, j) \in P} \log\left(1 + e^{-\sigma (s_i - s_j)}\right),
        \qquad \mathcal{L} = \frac{1}{|Q^+|} \sum_{q \in Q^+} \ell_q

    where :math:`Q^+` are the queries with at least one ordered pair. Queries whose teacher scores are
    all tied have nothing to teach and are left out of the mean; if no query has an ordered pair the
    loss is 0 (still differentiable, with zero gradient).

    Only the *order* of the teacher scores is used, never their values, so this loss suits teachers
    that give orderings (listwise LLM rankers, ranks): pass any numbers that sort like the ranking,
    higher = better (e.g. ``-rank``).

    Args:
        sigma: :math:`\sigma > 0`, the steepness of the logistic.

    References:
        - Burges et al., *Learning to Rank using Gradient Descent*, ICML 2005.
          https://icml.cc/2005/proceedings/papers/012_LearningToRank_BurgesEtAl.pdf

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | any order                    | only their order is used     | False = padding              |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss_fn = RankNetLoss()
            ranks = torch.tensor([[1, 3, 2]])            # a listwise teacher's ranking (1 = best)
            loss = loss_fn(student_scores, -ranks.float())
    """

    name = "ranknet"
    citation = """@inproceedings{burges2005learning,
    title={Learning to Rank using Gradient Descent},
    author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt
            and Hamilton, Nicole and Hullender, Greg},
    booktitle={Proceedings of the 22nd International Conference on Machine Learning},
    pages={89--96},
    year={2005}
}"""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__()
        self.sigma = check_positive("sigma", sigma)

    def get_config_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("RankNetLoss", student_scores, teacher_scores, mask)
        s = student_scores
        if mask is not None:
            s = torch.where(mask, s, torch.zeros_like(s))
            teacher = torch.where(mask, teacher, torch.zeros_like(teacher))
        ordered = teacher.unsqueeze(2) > teacher.unsqueeze(1)  # [B, i, j]: teacher puts i above j
        if mask is not None:
            ordered = ordered & mask.unsqueeze(2) & mask.unsqueeze(1)
        pair_loss = F.softplus(-self.sigma * (s.unsqueeze(2) - s.unsqueeze(1)))  # log(1 + e^{-σ(s_i - s_j)})
        pair_loss = torch.where(ordered, pair_loss, torch.zeros_like(pair_loss))
        n_pairs = ordered.sum(dim=(1, 2))
        has_pairs = n_pairs > 0
        if not bool(has_pairs.any()):
            return (s * 0.0).sum()
        per_query = pair_loss.sum(dim=(1, 2))[has_pairs] / n_pairs[has_pairs].to(s.dtype)
        return per_query.mean()
