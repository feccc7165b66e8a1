"""A weighted sum of losses whose inputs may differ (e.g. listwise KL + 0.1 * in-batch InfoNCE)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from distilir.losses.base import DistillationLoss, LossInputError, call_with_inputs, loss_input_names

__all__ = ["WeightedSum"]


class WeightedSum(DistillationLoss):
    r""":math:`\mathcal{L} = \sum_k w_k \mathcal{L}_k`, each sub-loss fed the inputs it needs.

    The forward takes one batch of named inputs as keyword arguments, e.g. the keys of
    ``StudentOutput.loss_inputs(teacher_scores)``::

        student_scores [B, N], teacher_scores [B, N], mask [B, N],
        in_batch_scores [B, M], positive_idx [B], in_batch_mask [B, M]

    Each sub-loss declares its inputs (``input_names`` / ``required_inputs``, or its forward signature)
    and receives only those. By default an argument is read from the batch key of the same name, or
    from the loss's ``default_input_map`` (InfoNCE reads ``scores`` from ``in_batch_scores``); a third
    tuple element overrides it: ``(loss, weight, {"scores": "my_matrix"})``. Optional inputs absent
    from the batch keep their defaults; a missing required input raises an error naming it.

    After each forward, ``last_components`` holds the unweighted value of every sub-loss (floats,
    detached) for logging. :meth:`set_progress` is passed on to the sub-losses (TAID uses it).

    Args:
        losses: ``(loss, weight)`` or ``(loss, weight, input_map)`` entries; weights must be finite and >= 0.

    References:
        - Listwise KL + 0.1 * InfoNCE: Tamber, Kazi, Sourabh, Lin, *Conventional Contrastive Learning Often
          Falls Short: Improving Dense Retrieval with Cross-Encoder Listwise Distillation and Synthetic
          Data*, 2025. https://arxiv.org/abs/2505.19274

    Example:
        ::

            loss_fn = WeightedSum([(ListwiseKLLoss(), 1.0), (InfoNCELoss(0.05), 0.1)])
            out = student.forward_scores(queries, docs)
            loss = loss_fn(**out.loss_inputs(teacher_scores))
    """

    name = "weighted-sum"
    help = "a weighted sum of losses: losses=[{name, weight, inputs (optional), **arguments}, ...]"

    @classmethod
    def from_spec(cls, **kwargs: Any) -> WeightedSum:
        """From the entries :meth:`get_config_dict` writes: ``losses=[{"name": ..., "weight": ...,
        "inputs": {...} (optional), **loss_kwargs}, ...]`` (each sub-loss built by ``build_loss``);
        the loss arguments may also come nested as ``"params": {...}``, the training config's spelling
        of the same entry (``distilir.training.config.LossSpec``), so there is one entry format."""
        from distilir.losses import build_loss

        entries = kwargs.pop("losses", None)
        if kwargs:
            raise TypeError(f"weighted-sum takes only `losses`, got also {sorted(kwargs)}")
        if not entries:
            raise ValueError(
                "weighted-sum needs losses=[{'name': 'kl', 'weight': 1.0}, "
                "{'name': 'infonce', 'weight': 0.1}, ...]"
            )
        parts = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ValueError(f"weighted-sum entry {k} must be a mapping with a 'name', got {entry!r}")
            entry = dict(entry)
            name, weight = entry.pop("name"), entry.pop("weight", 1.0)
            inputs = entry.pop("inputs", None) or None  # {} = the loss's default input map
            entry.update(entry.pop("params", None) or {})
            parts.append((build_loss(name, **entry), weight, inputs))
        return cls(parts)

    def __init__(self, losses: Sequence[tuple[Any, ...]]) -> None:
        super().__init__()
        if not losses:
            raise ValueError("WeightedSum needs at least one (loss, weight) entry")
        modules, weights, maps, names = [], [], [], []
        for k, entry in enumerate(losses):
            if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
                raise ValueError(
                    f"WeightedSum entry {k} must be (loss, weight) or (loss, weight, input_map), "
                    f"got {entry!r}"
                )
            loss, weight = entry[0], entry[1]
            input_map = dict(entry[2]) if len(entry) == 3 and entry[2] is not None else None
            if not isinstance(loss, nn.Module):
                raise ValueError(
                    f"WeightedSum entry {k}: expected a torch.nn.Module loss, got {type(loss).__name__}"
                )
            try:
                weight = float(weight)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"WeightedSum entry {k}: weight must be a number, got {weight!r}") from exc
            if not (weight >= 0 and weight != float("inf")):
                raise ValueError(f"WeightedSum entry {k}: weight must be finite and >= 0, got {weight}")
            if input_map is None:
                input_map = dict(_default_map(loss))
            arg_names, _ = loss_input_names(loss)
            unknown = set(input_map) - set(arg_names)
            if unknown:
                raise ValueError(
                    f"WeightedSum entry {k}: {type(loss).__name__} has no input(s) {sorted(unknown)}; "
                    f"its inputs are {list(arg_names)}"
                )
            base = _name(loss)
            name = base if base not in names else f"{base}_{k}"
            modules.append(loss)
            weights.append(weight)
            maps.append(input_map)
            names.append(name)
        self.losses = nn.ModuleList(modules)
        self.weights = weights
        self.input_maps = maps
        self.names = names
        self.last_components: dict[str, float] = {}

    def _entries(self) -> list[tuple[str, nn.Module, float, dict[str, str]]]:
        return list(zip(self.names, self.losses, self.weights, self.input_maps, strict=True))

    def forward(self, **inputs: Any) -> Tensor:
        total: Tensor | None = None
        components: dict[str, float] = {}
        for name, loss, weight, input_map in self._entries():
            try:
                value = call_with_inputs(loss, inputs, input_map)
            except LossInputError as exc:
                raise LossInputError(f"WeightedSum component {name!r}: {exc}") from exc
            components[name] = float(value.detach())
            term = value * weight
            total = term if total is None else total + term
        self.last_components = components
        return total  # type: ignore[return-value]  # at least one entry, checked in __init__

    def from_inputs(self, inputs: Mapping[str, Any]) -> Tensor:
        return self(**inputs)

    def set_progress(self, step: int, total_steps: int) -> None:
        for loss in self.losses:
            if isinstance(loss, DistillationLoss):
                loss.set_progress(step, total_steps)

    def get_config_dict(self) -> dict[str, Any]:
        entries = []
        for _, loss, weight, input_map in self._entries():
            config = loss.get_config_dict() if isinstance(loss, DistillationLoss) else {}
            entry = {"name": _name(loss), "weight": weight, **config}
            if input_map and input_map != dict(_default_map(loss)):
                entry["inputs"] = dict(input_map)
            entries.append(entry)
        return {"losses": entries}

    @property
    def citation(self) -> str:
        return "\n".join(
            loss.citation for loss in self.losses if isinstance(loss, DistillationLoss) and loss.citation
        )

    @property
    def uses_in_batch(self) -> bool:  # type: ignore[override]
        return any(isinstance(loss, DistillationLoss) and loss.uses_in_batch for loss in self.losses)

    def extra_repr(self) -> str:
        return ", ".join(f"{n}*{w:g}" for n, w in zip(self.names, self.weights, strict=True))


def _name(loss: nn.Module) -> str:
    """A sub-loss's name: the registry name of a DistillationLoss, else (a user's module) its class."""
    return loss.name if isinstance(loss, DistillationLoss) else type(loss).__name__


def _default_map(loss: nn.Module) -> Mapping[str, str]:
    return loss.default_input_map if isinstance(loss, DistillationLoss) else {}
