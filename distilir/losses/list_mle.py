"""ListMLE: Plackett–Luce likelihood of the teacher's ordering under the student (Xia et al., 2008)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_scores, fill_padding, suffix_logsumexp

__all__ = ["ListMLELoss", "plackett_luce_nll_terms"]


def plackett_luce_nll_terms(
    student_scores: Tensor, order: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Per-position negative log-likelihood terms of the permutation ``order`` under the student.

    Returns ``(terms, valid)`` of shape [B, N] in permutation order, with
    ``terms[:, k] = log sum_{l >= k} exp(s[order[l]]) - s[order[k]]`` over valid candidates and 0 at
    padding. ``order`` must list every row's valid candidates before its padding.
    """
    s = fill_padding(student_scores, mask)
    s_sorted = s.gather(1, order)
    terms = suffix_logsumexp(s_sorted) - s_sorted
    if mask is None:
        return terms, torch.ones_like(terms, dtype=torch.bool)
    valid = mask.gather(1, order)
    return torch.where(valid, terms, torch.zeros_like(terms)), valid


def teacher_order(teacher: Tensor, mask: Tensor | None, positive_first: bool = False) -> Tensor:
    """Indices sorting each row by descending teacher score, padding last, ties in column order."""
    key = teacher if mask is None else teacher.masked_fill(~mask, float("-inf"))
    if positive_first:
        key = key.clone()
        key[:, 0] = float("inf")
    return torch.sort(key, dim=-1, descending=True, stable=True).indices


class ListMLELoss(DistillationLoss):
    r"""Negative Plackett–Luce log-likelihood of the teacher's full ranking under the student scores.

    Let :math:`\pi` sort a query's valid candidates by descending teacher score (ties broken by column
    order, i.e. stably). Then

    .. math::

        \ell_q = -\log P_{PL}(\pi \mid s)
               = \sum_{k=1}^{|V|} \left(\log \sum_{l=k}^{|V|} e^{s_{\pi_l}} - s_{\pi_k}\right),
        \qquad \mathcal{L} = \mathrm{mean}_q\, \ell_q

    Like RankNet it uses only the teacher's order, not its values. The per-query loss is a sum over
    positions (as in the paper), so it grows with the list length; compare values only at equal N.

    References:
        - Xia et al., *Listwise Approach to Learning to Rank: Theory and Algorithm*, ICML 2008.
          https://dl.acm.org/doi/10.1145/1390156.1390306

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | any order                    | only their order is used     | False = padding              |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss = ListMLELoss()(student_scores, teacher_scores, mask)
    """

    name = "listmle"
    citation = """@inproceedings{xia2008listwise,
    title={Listwise Approach to Learning to Rank: Theory and Algorithm},
    author={Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang},
    booktitle={Proceedings of the 25th International Conference on Machine Learning},
    pages={1192--1199},
    year={2008}
}"""

    def get_config_dict(self) -> dict[str, Any]:
        return {}

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("ListMLELoss", student_scores, teacher_scores, mask)
        terms, _ = plackett_luce_nll_terms(student_scores, teacher_order(teacher, mask), mask)
        return terms.sum(dim=-1).mean()
