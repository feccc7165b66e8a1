"""Score scales for distillation: per-query normalisation of teacher scores and margin calibration.

Teacher scores come on any scale (BM25 in the tens, cross-encoder logits in ±10, an ensemble's
z-scores in ±3) while a cosine student's scores live in [-1, 1] and its softmax sees them divided by
a temperature. What each setting does to the loss:

* ``normalize_per_query(t, "zscore")``: ``(t - mean) / std`` over a query's valid candidates. The
  teacher distribution ``softmax(t / T_t)`` then depends only on the teacher's *relative* scores, so
  queries with a wide and a narrow score range get the same sharpness for the same ``T_t``.
* ``"minmax"``: ``(t - min) / (max - min)`` into [0, 1] (Tamber et al. 2025 pair it with student
  temperature 0.05 and teacher temperature 0.3); with a single candidate, 1.
* ``"none"``: the raw scores.
* :func:`calibrate_margin_scale`: the factor ``s`` that makes the teacher's mean absolute margin
  ``|t_i - t_j|`` equal the student's on the same rows. Margin-MSE regresses student margins on
  ``s * teacher margins``; a scale far below the student's own gaps compresses the student's space
  (every margin is pulled towards a small target), far above it asks for gaps a cosine student
  cannot produce. Measured at step 0 and recorded in the run's manifest.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NORMALIZATIONS", "calibrate_margin_scale", "normalize_per_query"]

NORMALIZATIONS = ("none", "zscore", "minmax")


def normalize_per_query(scores: Tensor, mask: Tensor | None = None, method: str = "zscore") -> Tensor:
    """Normalise each row of ``scores[B, N]`` over its valid entries (``mask[B, N]``, True = valid);
    invalid entries are returned as 0."""
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if method == "none":
        return torch.where(mask, scores, torch.zeros_like(scores))
    m = mask.to(scores.dtype)
    n = m.sum(dim=1, keepdim=True).clamp_min(1.0)
    if method == "zscore":
        mean = (scores * m).sum(dim=1, keepdim=True) / n
        var = (((scores - mean) * m) ** 2).sum(dim=1, keepdim=True) / n
        out = (scores - mean) / var.sqrt().clamp_min(1e-6)
    else:
        big = torch.finfo(scores.dtype).max
        lo = torch.where(mask, scores, torch.full_like(scores, big)).min(dim=1, keepdim=True).values
        hi = torch.where(mask, scores, torch.full_like(scores, -big)).max(dim=1, keepdim=True).values
        span = hi - lo
        out = torch.where(span > 0, (scores - lo) / span.clamp_min(1e-12), torch.ones_like(scores))
    return torch.where(mask, out, torch.zeros_like(out))


def calibrate_margin_scale(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> float:
    """``mean|s_i - s_j| / mean|t_i - t_j|`` over all valid pairs of each row (see the module
    docstring); 1.0 when the teacher has no spread."""
    if mask is None:
        mask = torch.ones_like(student, dtype=torch.bool)
    pair = mask.unsqueeze(2) & mask.unsqueeze(1)
    ds = (student.unsqueeze(2) - student.unsqueeze(1)).abs()[pair]
    dt = (teacher.unsqueeze(2) - teacher.unsqueeze(1)).abs()[pair]
    if dt.numel() == 0 or float(dt.mean()) == 0.0:
        return 1.0
    return float(ds.mean() / dt.mean())
