"""The trainer's view of a student: build one from the config, run it on a batch, reach its weights.

Kept in one place so that the trainer depends on the student contract of :mod:`distilir.students`
(:class:`~distilir.students.Student`) in exactly these few functions::

    student.forward_scores(queries, docs_lists, mask) -> StudentOutput   # .scores [B, N], .loss_inputs(t),
                                                         # .regularization {flops_query, flops_doc}
    student.set_progress(step); student.new_parameters(); student.log_values()
    student.save(path); student.get_config_dict(); student.parameters() / state_dict()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from distilir.students.base import StudentOutput
from distilir.training.config import FlopsConfig, StudentConfig

__all__ = ["build_student", "run_student", "student_module"]


def build_student(
    config: StudentConfig,
    *,
    flops: FlopsConfig | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> Any:
    """Instantiate the student of ``config.kind`` (``distilir.students.STUDENTS``) with its model, max
    length and params, plus what its class takes from the run (``training_kwargs``: SPLADE the FLOPS
    weights and warm-up of ``flops``, a cross-encoder the run's seed for its new head); ``params``
    win over both."""
    from distilir.students import STUDENTS
    from distilir.students import build_student as build

    kwargs: dict[str, Any] = {**STUDENTS.get(config.kind).training_kwargs(flops=flops, seed=seed)}
    kwargs.update(config.params)
    kwargs["model"] = config.model
    if config.max_length is not None:
        kwargs.setdefault("max_length", config.max_length)
    if device is not None:
        kwargs.setdefault("device", str(device))
    return build(config.kind, **kwargs)


def student_module(student: Any) -> nn.Module:
    """The torch module holding the student's trainable weights: the student itself."""
    if not isinstance(student, nn.Module):
        raise TypeError(
            f"{type(student).__name__} is not a torch.nn.Module; students follow the "
            "distilir.students.Student protocol (subclass distilir.students.BaseStudent)."
        )
    return student


def run_student(
    student: Any, queries: list[str], docs: list[list[str]], teacher_scores: Tensor, mask: Tensor
) -> tuple[StudentOutput, dict[str, Any]]:
    """One forward pass with gradients (``student.forward_scores``, see :mod:`distilir.students.base`);
    returns the student's output and the keyword inputs of the loss."""
    out = student.forward_scores(queries, docs, mask)
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
    return out, inputs
