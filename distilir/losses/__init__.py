"""Distillation losses: score tensors in, a scalar out.

Every loss takes ``(student_scores[B, N], teacher_scores[B, N], mask[B, N] | None)`` (InfoNCE takes an
in-batch score matrix and the positives' columns instead), so one implementation serves dense,
sparse and cross-encoder students. See :mod:`distilir.losses.base` for the shared contract.

Configs name losses through :func:`build_loss`::

    build_loss("kl", teacher_temperature=2.0)
    build_loss("weighted-sum", losses=[{"name": "kl", "weight": 1.0},
                                       {"name": "infonce", "weight": 0.1, "temperature": 0.05}])
"""

from __future__ import annotations

from typing import Any

from distilir_index.registry import Registry
from torch import nn

from distilir.losses.base import DistillationLoss, LossInputError
from distilir.losses.combined import WeightedSum
from distilir.losses.info_nce import InfoNCELoss, in_batch_positive_index
from distilir.losses.list_mle import ListMLELoss
from distilir.losses.list_net import ListNetLoss
from distilir.losses.listwise_kl import ListwiseKLLoss
from distilir.losses.margin_mse import MarginMSELoss
from distilir.losses.pld import PLDLoss
from distilir.losses.rank_net import RankNetLoss
from distilir.losses.taid import TAIDLoss

__all__ = [
    "LOSSES",
    "DistillationLoss",
    "InfoNCELoss",
    "ListMLELoss",
    "ListNetLoss",
    "ListwiseKLLoss",
    "LossInputError",
    "MarginMSELoss",
    "PLDLoss",
    "RankNetLoss",
    "TAIDLoss",
    "WeightedSum",
    "build_loss",
    "in_batch_positive_index",
]

#: Losses by the name a config gives (case and ``-`` / ``_`` do not matter): name -> class. Each class
#: has ``name`` (its key here), ``help``, ``citation`` and ``from_spec(**kwargs)``.
LOSSES = Registry(
    "loss",
    {
        cls.name: cls
        for cls in (
            MarginMSELoss,
            ListwiseKLLoss,
            RankNetLoss,
            ListNetLoss,
            ListMLELoss,
            PLDLoss,
            TAIDLoss,
            InfoNCELoss,
            WeightedSum,
        )
    },
    error=ValueError,
)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss from its registry name and keyword arguments.

    ``name`` is one of ``LOSSES`` (case and ``-`` / ``_`` do not matter), e.g. ``"weighted-sum"`` with
    ``losses=[{"name": ..., "weight": ..., "inputs": {...} (optional), **loss_kwargs}, ...]`` (the
    format ``WeightedSum.get_config_dict()`` writes, so a saved config rebuilds the same loss).
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__}")
    cls = LOSSES.get(name)
    try:
        return cls.from_spec(**kwargs)
    except TypeError as exc:
        raise TypeError(f"cannot build loss {cls.name!r} with arguments {sorted(kwargs)}: {exc}") from exc
