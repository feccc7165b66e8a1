"""TAID: distil towards a target that moves from the student to the teacher (Shing et al., 2025)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from distilir.losses.base import DistillationLoss, check_positive, check_scores, fill_padding

__all__ = ["TAIDLoss"]


class TAIDLoss(DistillationLoss):
    r"""Temporally Adaptive Interpolated Distillation over a candidate list.

    The target interpolates, in logit space, between the student's own (detached) scores and the
    teacher's; the interpolation parameter :math:`t` rises from ``t_start`` to ``t_end`` during training:

    .. math::

        p_t = \mathrm{softmax}\big(((1 - t)\,\mathrm{sg}(s) + t\, u) / \tau\big), \qquad
        \ell_q = \mathrm{KL}\big(p_t \,\|\, \mathrm{softmax}(s / \tau)\big), \qquad
        \mathcal{L} = \mathrm{mean}_q\, \ell_q

    where :math:`s` are student scores, :math:`u` teacher scores and :math:`\mathrm{sg}` stops the
    gradient (the target is a constant). Early on the target is close to the student, which eases the
    capacity gap; at :math:`t = 1` the loss is the plain listwise KL.

    Schedule: call :meth:`set_progress` once per optimiser step.

    * ``adaptive=False`` (default): linear, :math:`t_n = t_{start} + (t_{end} - t_{start})\, n / N`.
    * ``adaptive=True``: the paper's momentum update. With :math:`J_n` the loss of step :math:`n`,
      :math:`\delta_n = (J_{n-1} - J_n) / (J_{n-1} + \epsilon)`,
      :math:`m_n = \beta m_{n-1} + (1 - \beta)\delta_n`,
      :math:`t_n = \min\big(t_{end}, \max(t^{lin}_n,\ t_{n-1} + \alpha\, \sigma(m_n)(1 - t_{n-1}))\big)`.
      :math:`J_n` is the value of the latest forward pass unless given to :meth:`set_progress`; the
      first call only records it (and applies the linear floor). The linear schedule is the floor,
      so :math:`t` never falls behind it.

    :math:`t` and the adaptive state are buffers, saved in ``state_dict`` for resuming.

    Args:
        t_start: :math:`t` at step 0, in [0, 1].
        t_end: the largest :math:`t`, in [t_start, 1].
        temperature: :math:`\tau > 0`, divides student and teacher scores.
        adaptive: use the momentum update on top of the linear schedule.
        alpha: step size of the adaptive update (paper default 5e-4).
        beta: momentum of the adaptive update, in [0, 1) (paper default 0.99).

    References:
        - Shing, Misaki, Bao, Yokoi, Akiba, *TAID: Temporally Adaptive Interpolated Distillation for
          Efficient Knowledge Transfer in Language Models*, ICLR 2025. https://arxiv.org/abs/2501.16937

    Inputs:
        +------------------------------+------------------------------+------------------------------+
        | student_scores [B, N]        | teacher_scores [B, N]        | mask [B, N] (optional)       |
        +==============================+==============================+==============================+
        | any order                    | raw teacher logits           | False = padding              |
        +------------------------------+------------------------------+------------------------------+

    Example:
        ::

            loss_fn = TAIDLoss(t_start=0.4, t_end=1.0)
            for step, batch in enumerate(batches):
                loss_fn.set_progress(step, total_steps)
                loss = loss_fn(student(batch), batch.teacher_scores)
                loss.backward(); optimiser.step(); optimiser.zero_grad()
    """

    name = "taid"
    citation = """@inproceedings{shing2025taid,
    title={TAID: Temporally Adaptive Interpolated Distillation for Efficient Knowledge Transfer
           in Language Models},
    author={Shing, Makoto and Misaki, Kou and Bao, Han and Yokoi, Sho and Akiba, Takuya},
    booktitle={The Thirteenth International Conference on Learning Representations},
    year={2025},
    note={arXiv:2501.16937}
}"""

    t: Tensor
    momentum: Tensor
    prev_loss: Tensor

    def __init__(
        self,
        t_start: float = 0.4,
        t_end: float = 1.0,
        temperature: float = 1.0,
        adaptive: bool = False,
        alpha: float = 5e-4,
        beta: float = 0.99,
    ) -> None:
        super().__init__()
        t_start, t_end = float(t_start), float(t_end)
        if not 0.0 <= t_start <= t_end <= 1.0:
            raise ValueError(
                f"TAIDLoss needs 0 <= t_start <= t_end <= 1, got t_start={t_start}, t_end={t_end}. "
                "t is the weight of the teacher in the interpolated target."
            )
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"TAIDLoss alpha must be in [0, 1], got {alpha}")
        if not 0.0 <= float(beta) < 1.0:
            raise ValueError(f"TAIDLoss beta must be in [0, 1), got {beta}")
        self.t_start, self.t_end = t_start, t_end
        self.temperature = check_positive("temperature", temperature)
        self.adaptive = bool(adaptive)
        self.alpha, self.beta = float(alpha), float(beta)
        self.register_buffer("t", torch.tensor(t_start, dtype=torch.float64))
        self.register_buffer("momentum", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("prev_loss", torch.tensor(float("nan"), dtype=torch.float64))
        self._last_loss: float | None = None

    def get_extra_state(self) -> dict[str, Any]:
        """The last loss value the adaptive schedule reads at the next :meth:`set_progress`: kept in
        ``state_dict`` so a resumed run continues the same schedule."""
        return {"last_loss": self._last_loss}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._last_loss = state.get("last_loss")

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "t_start": self.t_start,
            "t_end": self.t_end,
            "temperature": self.temperature,
            "adaptive": self.adaptive,
            "alpha": self.alpha,
            "beta": self.beta,
        }

    @property
    def current_t(self) -> float:
        return float(self.t)

    def set_progress(self, step: int, total_steps: int, loss: float | Tensor | None = None) -> float:
        """Move :math:`t` to training step ``step`` of ``total_steps``; return the new :math:`t`."""
        if int(total_steps) <= 0:
            raise ValueError(f"total_steps must be a positive number of optimiser steps, got {total_steps}")
        if int(step) < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        progress = min(int(step) / int(total_steps), 1.0)
        linear = self.t_start + (self.t_end - self.t_start) * progress
        if not self.adaptive:
            new_t = linear
        else:
            current = float(loss.detach()) if isinstance(loss, Tensor) else loss
            if current is None:
                current = self._last_loss
            new_t = float(self.t)
            if current is not None and math.isfinite(current):
                prev = float(self.prev_loss)
                if math.isfinite(prev):
                    change = (prev - current) / (prev + 1e-15)
                    m = self.beta * float(self.momentum) + (1.0 - self.beta) * change
                    self.momentum.fill_(m)
                    sig = 1.0 / (1.0 + math.exp(-m))
                    new_t = new_t + self.alpha * sig * (1.0 - new_t)
                self.prev_loss.fill_(current)
            new_t = min(self.t_end, max(linear, new_t))
        self.t.fill_(new_t)
        return new_t

    def forward(self, student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
        teacher, mask = check_scores("TAIDLoss", student_scores, teacher_scores, mask)
        t = float(self.t)
        target_logits = ((1.0 - t) * student_scores.detach() + t * teacher) / self.temperature
        log_p = torch.log_softmax(fill_padding(target_logits, mask), dim=-1)
        log_q = torch.log_softmax(fill_padding(student_scores / self.temperature, mask), dim=-1)
        loss = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
        if self.adaptive:
            self._last_loss = float(loss.detach())
        return loss
