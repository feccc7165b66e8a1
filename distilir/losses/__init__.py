"""Distillation losses: score tensors in, a scalar out.

Every loss takes ``(student_scores[B, N], teacher_scores[B, N], mask[B, N] | None)`` (InfoNCE takes an
in-batch score matrix and the positives' columns instead), so one implementation serves dense,
sparse and cross-encoder students. See :mod:`distilir.losses.base` for the shared contract.

Configs name losses through :func:`build_loss`::

    build_loss("kl", teacher_temperature=2.0)
    build_loss("weighted_sum", losses=[{"name": "kl", "weight": 1.0},
                                       {"name": "infonce", "weight": 0.1, "temperature": 0.05}])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

#: Registry of loss names used in configs.
LOSSES: dict[str, type[DistillationLoss]] = {
    "margin_mse": MarginMSELoss,
    "kl": ListwiseKLLoss,
    "ranknet": RankNetLoss,
    "listnet": ListNetLoss,
    "listmle": ListMLELoss,
    "pld": PLDLoss,
    "taid": TAIDLoss,
    "infonce": InfoNCELoss,
}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss from its registry name and keyword arguments.

    ``name`` is one of ``LOSSES`` (case and ``-`` / ``_`` do not matter), or ``"weighted_sum"`` with
    ``losses=[{"name": ..., "weight": ..., "inputs": {...} (optional), **loss_kwargs}, ...]`` (the
    format ``WeightedSum.get_config_dict()`` writes, so a saved config rebuilds the same loss).
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key == "weighted_sum":
        entries = kwargs.pop("losses", None)
        if kwargs:
            raise TypeError(f"weighted_sum takes only `losses`, got also {sorted(kwargs)}")
        if not entries:
            raise ValueError(
                "weighted_sum needs losses=[{'name': 'kl', 'weight': 1.0}, "
                "{'name': 'infonce', 'weight': 0.1}, ...]"
            )
        parts = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ValueError(f"weighted_sum entry {k} must be a mapping with a 'name', got {entry!r}")
            entry = dict(entry)
            sub_name = entry.pop("name")
            weight = entry.pop("weight", 1.0)
            inputs = entry.pop("inputs", None)
            parts.append((build_loss(sub_name, **entry), weight, inputs))
        return WeightedSum(parts)
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {sorted(LOSSES)} and 'weighted_sum'.")
    try:
        return LOSSES[key](**kwargs)
    except TypeError as exc:
        raise TypeError(f"cannot build loss {key!r} with arguments {sorted(kwargs)}: {exc}") from exc
