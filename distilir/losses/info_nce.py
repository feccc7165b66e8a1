"""InfoNCE with in-batch negatives: a softmax cross entropy over a query-by-document score matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from distilir.losses.base import DistillationLoss, LossInputError, check_positive, check_scores, fill_padding

__all__ = ["InfoNCELoss", "in_batch_positive_index"]

#: A distributed hook: maps this process's document embeddings [M_local, D] to the embeddings of all
#: processes [M_total, D] (with gradients for the local part, e.g. an all_gather that keeps them) and
#: returns the offset of the local documents in the gathered tensor.
GatherFn = Callable[[Tensor], tuple[Tensor, int]]


def in_batch_positive_index(
    batch_size: int, group_size: int, device: torch.device | str | None = None
) -> Tensor:
    """Column of each query's positive when the documents are laid out query by query, positive first:
    documents ``[i * group_size, (i + 1) * group_size)`` belong to query ``i``, so its positive is
    ``i * group_size``."""
    if batch_size <= 0 or group_size <= 0:
        raise ValueError(f"batch_size and group_size must be positive, got {batch_size} and {group_size}")
    return torch.arange(batch_size, device=device) * group_size


class InfoNCELoss(DistillationLoss):
    r"""Contrastive InfoNCE loss over queries against all documents of the batch.

    Given a score matrix :math:`S \in \mathbb{R}^{B \times M}` (query :math:`i` against every
    document :math:`j` in the batch: its own positive and negatives, and the other queries' documents,
    which serve as in-batch negatives) and the column :math:`p_i` of each query's positive,

    .. math::

        \ell_i = -\log \frac{e^{S_{i p_i} / \tau}}{\sum_{j \in V_i} e^{S_{ij} / \tau}}, \qquad
        \mathcal{L} = \frac{1}{B}\sum_i \ell_i

    where :math:`V_i` are the unmasked columns of row :math:`i` (mask out false negatives such as a
    copy of the query's positive listed under another query). :math:`\tau = 0.05` suits cosine
    similarities in [-1, 1]; use :math:`\tau = 1` for unbounded dot products that were trained
    without a temperature.

    How a trainer builds the matrix: encode the B queries and the B*N documents (each query's positive
    first, then its negatives, query after query), then ``S = q @ d.T`` (or cosine) is [B, B*N] and
    the positives are at ``in_batch_positive_index(B, N) = [0, N, 2N, ...]``. :meth:`from_embeddings`
    does exactly this. Bi-encoder students return it ready (``StudentOutput.in_batch_scores``).

    Distributed training: pass ``gather_documents`` (see ``GatherFn``) to score every query against the
    documents of all processes; :meth:`from_embeddings` shifts the positive indices by the returned
    offset. Without it only the local batch is used.

    Args:
        temperature: :math:`\tau > 0`.
        gather_documents: optional hook used by :meth:`from_embeddings` in distributed training.

    References:
        - van den Oord, Li, Vinyals, *Representation Learning with Contrastive Predictive Coding*, 2018.
          https://arxiv.org/abs/1807.03748
        - Karpukhin et al., *Dense Passage Retrieval for Open-Domain Question Answering* (in-batch
          negatives), 2020. https://arxiv.org/abs/2004.04906

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | scores [B, M]                | positive_idx [B] (long)      | mask [B, M] (optional)       |
        +==============================+==============================+==============================+
        | query vs every in-batch doc  | column of each positive      | False = excluded column      |
        +------------------------------+------------------------------+------------------------------+

    In a :class:`~distilir.losses.WeightedSum` batch these come as ``in_batch_scores``,
    ``positive_idx`` and ``in_batch_mask``.

    Example:
        ::

            loss_fn = InfoNCELoss(temperature=0.05)
            loss = loss_fn.from_embeddings(query_emb, doc_emb)           # doc_emb: [B*N, D]
            # or, with a ready matrix:
            loss = loss_fn(scores, in_batch_positive_index(B, N))
    """

    name = "infonce"
    citation = """@article{oord2018representation,
    title={Representation Learning with Contrastive Predictive Coding},
    author={van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
    journal={arXiv preprint arXiv:1807.03748},
    year={2018}
}"""
    input_names = ("scores", "positive_idx", "mask")
    required_inputs = ("scores", "positive_idx")
    #: Keys of a WeightedSum batch this loss reads by default (forward argument -> batch key).
    default_input_map = {"scores": "in_batch_scores", "positive_idx": "positive_idx", "mask": "in_batch_mask"}
    uses_in_batch = True

    def __init__(self, temperature: float = 0.05, gather_documents: GatherFn | None = None) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.gather_documents = gather_documents

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def forward(self, scores: Tensor, positive_idx: Tensor, mask: Tensor | None = None) -> Tensor:
        _, mask = check_scores("InfoNCELoss", scores, None, mask)
        batch, m = scores.shape
        if not isinstance(positive_idx, Tensor):
            positive_idx = torch.as_tensor(positive_idx)
        if positive_idx.dim() != 1 or positive_idx.shape[0] != batch or positive_idx.is_floating_point():
            raise LossInputError(
                f"InfoNCELoss: positive_idx must be an integer tensor of shape [{batch}] (one column per "
                f"query), got dtype {positive_idx.dtype} and shape {tuple(positive_idx.shape)}. "
                "For documents laid out "
                "query by query with the positive first use in_batch_positive_index(batch_size, group_size)."
            )
        positive_idx = positive_idx.to(device=scores.device, dtype=torch.long)
        if bool(((positive_idx < 0) | (positive_idx >= m)).any()):
            raise LossInputError(
                f"InfoNCELoss: positive_idx must lie in [0, {m}) (the score matrix has {m} columns), got "
                f"values {positive_idx.tolist()[:10]}."
            )
        if mask is not None and not bool(mask.gather(1, positive_idx.unsqueeze(1)).all()):
            raise LossInputError(
                "InfoNCELoss: a query's positive column is masked out; the positive must stay valid."
            )
        return F.cross_entropy(fill_padding(scores / self.temperature, mask), positive_idx)

    @staticmethod
    def similarity(
        query_emb: Tensor, doc_emb: Tensor, similarity: Literal["cosine", "dot"] = "cosine"
    ) -> Tensor:
        """[B, D] x [M, D] -> [B, M] cosine or dot-product scores."""
        if similarity == "cosine":
            query_emb, doc_emb = F.normalize(query_emb, dim=-1), F.normalize(doc_emb, dim=-1)
        elif similarity != "dot":
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        return query_emb @ doc_emb.transpose(0, 1)

    def from_embeddings(
        self,
        query_emb: Tensor,
        doc_emb: Tensor,
        positive_idx: Tensor | None = None,
        *,
        similarity: Literal["cosine", "dot"] = "cosine",
        mask: Tensor | None = None,
    ) -> Tensor:
        """InfoNCE from embeddings: queries [B, D], documents [M, D] (by default M = B*N laid out query by
        query, positive first, so ``positive_idx`` defaults to ``[0, N, 2N, ...]``)."""
        if query_emb.dim() != 2 or doc_emb.dim() != 2 or query_emb.shape[1] != doc_emb.shape[1]:
            raise LossInputError(
                "InfoNCELoss.from_embeddings: expected query_emb [B, D] and doc_emb [M, D] with the same D, "
                "got "
                f"{tuple(query_emb.shape)} and {tuple(doc_emb.shape)}."
            )
        batch, m_local = query_emb.shape[0], doc_emb.shape[0]
        if positive_idx is None:
            if m_local % batch:
                raise LossInputError(
                    f"InfoNCELoss.from_embeddings: {m_local} documents for {batch} queries is not a whole "
                    "number "
                    "per query; pass positive_idx explicitly."
                )
            positive_idx = in_batch_positive_index(batch, m_local // batch, device=query_emb.device)
        offset = 0
        if self.gather_documents is not None:
            doc_emb, offset = self.gather_documents(doc_emb)
            if mask is not None:
                raise LossInputError(
                    "InfoNCELoss.from_embeddings: a mask cannot be combined with gather_documents."
                )
        scores = self.similarity(query_emb, doc_emb, similarity)
        return self(scores, positive_idx.to(query_emb.device) + offset, mask)
