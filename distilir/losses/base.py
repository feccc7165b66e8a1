"""What every distillation loss shares: the score-tensor contract, input checks, padding.

Contract (one for all losses, so one implementation serves dense, sparse and cross-encoder students)::

    loss(student_scores: Tensor[B, N], teacher_scores: Tensor[B, N],
         mask: BoolTensor[B, N] | None) -> Tensor[]

* Row ``i`` holds the ``N`` candidates of query ``i``; column 0 is the positive (for losses that use one)
  and the teacher's list is given in any order otherwise.
* ``mask[i, j] = False`` marks padding (lists of different lengths). Padded entries are excluded
  exactly: a padded batch gives the same loss as the unpadded lists computed one by one and averaged.
  Their values may be anything, even NaN or -inf.
* Every loss is a mean over queries of a per-query loss, so the batch size does not change its scale.
* Teacher scores are treated as constants (detached), cast to the student's dtype and device.

Why hand-written: sentence-transformers' losses take a *model* and run it, so they cannot be fed the
score tensors of an arbitrary student, and FlagEmbedding / Tevatron keep theirs inside trainers. The
formulas are short; each module cites its paper and the tests check them against explicit loops.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["DistillationLoss", "LossInputError", "check_scores", "fill_padding"]

#: Distance put between padded entries and the smallest valid entry of their row. exp(-1e4) is
#: exactly 0 in float32 and float64, so padded entries add exactly nothing to any softmax or
#: log-sum-exp, while every value stays finite (no -inf, hence no NaN in gradients).
_PAD_GAP = 1e4


class LossInputError(ValueError):
    """A loss was given tensors it cannot use; the message says what was expected and what to do."""


class DistillationLoss(nn.Module):
    """Base class of the score-tensor losses.

    Subclasses set ``name`` (the registry key), ``citation`` (BibTeX) and, when their forward takes
    other inputs than ``(student_scores, teacher_scores, mask)``, ``input_names``: the names of the
    forward arguments that come from a batch of inputs (see :meth:`from_inputs` and
    :class:`distilir.losses.WeightedSum`); ``required_inputs`` are those that must be present.
    """

    name: ClassVar[str] = "loss"
    help: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    input_names: ClassVar[tuple[str, ...]] = ("student_scores", "teacher_scores", "mask")
    required_inputs: ClassVar[tuple[str, ...]] = ("student_scores", "teacher_scores")
    #: forward argument -> batch key it is read from by default (InfoNCE: scores <- in_batch_scores)
    default_input_map: ClassVar[Mapping[str, str]] = {}
    #: whether the loss reads the in-batch score matrix (then distributed training gathers documents)
    uses_in_batch: ClassVar[bool] = False

    @classmethod
    def from_spec(cls, **kwargs: Any) -> DistillationLoss:
        """Build from the keyword arguments of a config entry (``build_loss(name, **kwargs)``)."""
        return cls(**kwargs)

    def set_progress(self, step: int, total_steps: int) -> None:
        """Hook called before every optimiser step (TAID moves its interpolation); no-op by default."""

    def get_config_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        return {}

    def from_inputs(self, inputs: Mapping[str, Any], input_map: Mapping[str, str] | None = None) -> Tensor:
        """Call the loss with the entries of ``inputs`` it declares in ``input_names``.

        ``input_map`` renames: ``{forward_argument: key_in_inputs}``. Optional arguments missing from
        ``inputs`` are left to their defaults; a missing required one raises :class:`LossInputError`.
        """
        return call_with_inputs(self, inputs, input_map)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


def loss_input_names(loss: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(all input names, required input names) of a loss module: those a :class:`DistillationLoss`
    declares, else (a user's plain ``nn.Module``) its forward signature."""
    if isinstance(loss, DistillationLoss):
        return tuple(loss.input_names), tuple(loss.required_inputs)
    params = [
        p
        for p in inspect.signature(loss.forward).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return tuple(p.name for p in params), tuple(p.name for p in params if p.default is p.empty)


def call_with_inputs(
    loss: nn.Module, inputs: Mapping[str, Any], input_map: Mapping[str, str] | None = None
) -> Tensor:
    names, required = loss_input_names(loss)
    input_map = dict(input_map or {})
    unknown = set(input_map) - set(names)
    if unknown:
        raise LossInputError(
            f"{type(loss).__name__} has no input(s) {sorted(unknown)}; its inputs are {list(names)}. "
            "Fix the input mapping given for this loss."
        )
    kwargs: dict[str, Any] = {}
    for arg in names:
        key = input_map.get(arg, arg)
        if key in inputs and inputs[key] is not None:
            kwargs[arg] = inputs[key]
        elif arg in required:
            raise LossInputError(
                f"{type(loss).__name__} needs the input {key!r} (its argument {arg!r}) "
                "but the batch has only "
                f"{sorted(k for k, v in inputs.items() if v is not None)}. Pass it, or map the argument to "
                "another key with (loss, weight, {argument: key})."
            )
    return loss(**kwargs)


def _shape(x: Any) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"


def check_scores(
    loss_name: str,
    student_scores: Tensor,
    teacher_scores: Tensor | None,
    mask: Tensor | None,
    *,
    min_valid: int = 2,
    first_column_valid: bool = False,
) -> tuple[Tensor | None, Tensor | None]:
    """Validate the (student, teacher, mask) triple; return (teacher, mask) ready to use.

    The returned teacher is detached and cast to the student's dtype and device. The returned mask is
    ``None`` when there is no padding (``mask`` None or all True), so losses can skip masking work.
    """
    if not isinstance(student_scores, Tensor):
        raise LossInputError(
            f"{loss_name}: student_scores must be a torch.Tensor of shape [batch, candidates], got "
            f"{_shape(student_scores)}. Pass the student's scores as a tensor (with gradients)."
        )
    if student_scores.dim() != 2:
        raise LossInputError(
            f"{loss_name}: expected student_scores of shape [batch, candidates] (2-D), got shape "
            f"{tuple(student_scores.shape)}. Reshape to one row of candidate scores per query, e.g. "
            "scores.view(batch_size, -1)."
        )
    if not student_scores.is_floating_point():
        raise LossInputError(
            f"{loss_name}: student_scores must be floating point, got dtype {student_scores.dtype}."
        )
    batch, n = student_scores.shape
    if batch == 0:
        raise LossInputError(f"{loss_name}: got an empty batch (shape {tuple(student_scores.shape)}).")
    if n < min_valid:
        raise LossInputError(
            f"{loss_name}: needs at least {min_valid} candidates per query, got {n} (shape "
            f"{tuple(student_scores.shape)}). Add negatives to each list."
        )
    if teacher_scores is not None:
        if not isinstance(teacher_scores, Tensor):
            teacher_scores = torch.as_tensor(teacher_scores)
        if teacher_scores.shape != student_scores.shape:
            raise LossInputError(
                f"{loss_name}: student_scores and teacher_scores must have the same shape, got "
                f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}. Both need one row per "
                "query and one column per candidate, in the same order."
            )
        teacher_scores = teacher_scores.detach().to(device=student_scores.device, dtype=student_scores.dtype)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise LossInputError(
                f"{loss_name}: mask must be a torch.bool tensor (True = real candidate, "
                "False = padding), got "
                f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}. Use mask.bool()."
            )
        if mask.shape != student_scores.shape:
            raise LossInputError(
                f"{loss_name}: mask has shape {tuple(mask.shape)} but the scores have shape "
                f"{tuple(student_scores.shape)}; they must be equal."
            )
        mask = mask.to(student_scores.device)
        counts = mask.sum(dim=1)
        short = (counts < min_valid).nonzero().flatten().tolist()
        if short:
            raise LossInputError(
                f"{loss_name}: every query needs at least {min_valid} valid (unmasked) candidates; "
                f"rows {short[:10]} "
                f"have {counts[short[:10]].tolist()}. Drop those queries from the batch or add candidates."
            )
        if first_column_valid and not bool(mask[:, 0].all()):
            rows = (~mask[:, 0]).nonzero().flatten().tolist()
            raise LossInputError(
                f"{loss_name}: column 0 holds each query's positive and must not be padding; it is masked in "
                f"rows {rows[:10]}. Put the positive first and pad at the end of each list."
            )
        if bool(mask.all()):
            mask = None
    if teacher_scores is not None:
        finite = torch.isfinite(teacher_scores)
        bad = ~finite if mask is None else (~finite & mask)
        if bool(bad.any()):
            where = bad.nonzero()[:5].tolist()
            raise LossInputError(
                f"{loss_name}: teacher_scores contain NaN or infinite values at (row, column) {where}. "
                "Teacher scores of real candidates must be finite; mark missing candidates as padding "
                "with mask=False."
            )
    return teacher_scores, mask


def fill_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """Replace padded entries by (row minimum over valid entries) - 1e4, a constant.

    Padded entries then carry exactly zero probability in a softmax and add exactly nothing to a
    log-sum-exp (``exp(-1e4) == 0`` in float32), yet stay finite, so no NaN can reach the gradients;
    the gradient with respect to a padded input is zero. Apply it *after* any temperature division.
    """
    if mask is None:
        return x
    big = torch.finfo(x.dtype).max
    low = x.detach().masked_fill(~mask, big).amin(dim=-1, keepdim=True) - _PAD_GAP
    return torch.where(mask, x, low)


def check_positive(name: str, value: float) -> float:
    """A strictly positive finite float (temperatures, sigmas)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a positive number, got {value!r}") from exc
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def suffix_logsumexp(x: Tensor) -> Tensor:
    """``out[..., k] = log(sum_{j >= k} exp(x[..., j]))`` along the last dimension (stable)."""
    return torch.logcumsumexp(x.flip(-1), dim=-1).flip(-1)
