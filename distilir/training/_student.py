"""The trainer's view of a student: build one from the config, run it on a batch, reach its weights.

Kept in one place so that the trainer depends on the student contract of :mod:`distilir.students`
in exactly these few functions::

    student.forward_scores(queries, docs_lists, mask) -> StudentOutput   # .scores [B, N], .loss_inputs(t),
                                                         # .regularization {flops_query, flops_doc}
    student.save(path); student.get_config_dict(); student.parameters() / state_dict()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from distilir.training.config import FlopsConfig, StudentConfig

__all__ = ["StepOutput", "build_student", "run_student", "student_module"]


def build_student(
    config: StudentConfig,
    *,
    flops: FlopsConfig | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """Instantiate the student of ``config.kind`` (``distilir.students.build_student``) with its model,
    max length and params; a SPLADE student gets the FLOPS weights and warm-up of ``flops``, a
    cross-encoder the run's seed for its new head (unless ``params`` sets one)."""
    from distilir.students import build_student as build

    kwargs: dict[str, Any] = dict(config.params)
    kwargs["model"] = config.model
    if config.max_length is not None:
        kwargs.setdefault("max_length", config.max_length)
    if device is not None:
        kwargs.setdefault("device", str(device))
    if config.kind == "splade" and flops is not None:
        kwargs.update(
            flops_query=flops.query_weight,
            flops_doc=flops.document_weight,
            flops_warmup_steps=flops.warmup_steps,
        )
    if config.kind == "cross_encoder" and seed is not None:
        kwargs.setdefault("seed", seed)
    return build(config.kind, **kwargs)


def student_module(student: Any) -> nn.Module:
    """The torch module holding the student's trainable weights."""
    if isinstance(student, nn.Module):
        return student
    for attr in ("module", "model"):
        inner = getattr(student, attr, None)
        if isinstance(inner, nn.Module):
            return inner
    raise TypeError(
        f"{type(student).__name__} exposes no torch module (expected an nn.Module, or a .model "
        "attribute holding one)."
    )


@dataclass
class StepOutput:
    """What one forward pass of the student gives the loss."""

    scores: Tensor  # [B, N]
    loss_inputs: dict[str, Any]
    regularization: dict[str, Tensor] = field(
        default_factory=dict
    )  # unweighted (SPLADE: flops_query, flops_doc)
    regularization_loss: Tensor | None = None  # weighted at the student's schedule step; added to the loss


def run_student(
    student: Any, queries: list[str], docs: list[list[str]], teacher_scores: Tensor, mask: Tensor
) -> StepOutput:
    """One forward pass with gradients (``student.forward_scores``, see :mod:`distilir.students.base`);
    returns the scores, the keyword inputs of the loss and the unweighted regularisers."""
    forward = getattr(student, "forward_scores", None)
    if not callable(forward):
        raise TypeError(
            f"{type(student).__name__} has no forward_scores(queries, docs_lists, mask); students must "
            "follow "
            "the distilir.students.Student protocol."
        )
    out = forward(queries, docs, mask)
    scores = out.scores
    if not isinstance(scores, Tensor) or scores.shape != teacher_scores.shape:
        raise ValueError(
            f"{type(student).__name__} returned scores of shape "
            f"{tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}; expected "
            f"{tuple(teacher_scores.shape)} (one row per query, one column per candidate)."
        )
    inputs = dict(out.loss_inputs(teacher_scores.to(scores.device)))
    if inputs.get("mask") is None:
        inputs["mask"] = mask.to(scores.device)
    return StepOutput(
        scores,
        inputs,
        dict(getattr(out, "regularization", None) or {}),
        getattr(out, "regularization_loss", None),
    )
