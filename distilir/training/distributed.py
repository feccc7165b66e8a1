"""Distributed data-parallel training: one process per device (``torchrun``), the student in DDP.

Single-process training uses :data:`SINGLE_PROCESS`, whose methods are no-ops. Under ``torchrun``
(or ``accelerate launch``, which sets the same ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` variables)
:meth:`DistributedContext.detect` joins the process group (``gloo`` on CPU, ``nccl`` on CUDA) and the
trainer

* shards the data: every process reads a disjoint slice of the same seeded permutation (see
  :class:`distilir.training.data.ListSampler`), so a step's global batch is ``optim.batch_size`` lists
  per process times ``world_size``, the same lists a single process with that batch size reads
  (exactly so when the number of lists is a multiple of ``world_size``; otherwise the tail is dropped);
* wraps the student in ``torch.nn.parallel.DistributedDataParallel`` (:meth:`DistributedContext.wrap`),
  which averages gradients over processes while the backward pass runs;
* gathers document embeddings across processes for in-batch negatives (:func:`gather_with_grad`,
  :meth:`DistributedContext.gather_in_batch`), so InfoNCE sees ``world_size`` times more negatives;
* writes checkpoints, metrics and the final student from rank 0 only (:attr:`DistributedContext.is_main`).

Why the gathered embeddings need gradients from every process: rank ``r``'s loss scores its own
queries against *all* documents, so the documents of rank ``r`` also receive gradient from the
losses of the other ranks. Dropping it (treating the other ranks' embeddings as constants, as a
plain ``all_gather`` of detached tensors does) gives a gradient that is not the one of the
single-process loss over the global batch. ``torch.distributed.nn.functional.all_gather`` sums those
gradients back in its backward pass; with DDP's average this yields exactly the gradient of the
global-batch loss (checked against a single process in ``tests/distilir/training/test_ddp.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SINGLE_PROCESS", "DistributedContext", "StudentForward", "gather_with_grad"]


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def gather_with_grad(local: Tensor) -> tuple[Tensor, int]:
    """All-gather ``local`` [M_r, D] from every process into [sum_r M_r, D]; return it and the offset of
    this process's rows. Processes may hold different numbers of rows (padded for the collective,
    then cut). The result is differentiable with respect to every process's rows: the backward pass
    sums, over processes, the gradient each one computed for this process's rows (see the module
    docstring for why), via ``torch.distributed.nn.functional.all_gather``."""
    import torch.distributed as dist

    if not _initialised() or dist.get_world_size() == 1:
        return local, 0
    from torch.distributed.nn.functional import all_gather

    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = torch.zeros(world, dtype=torch.long, device=local.device)
    sizes[rank] = local.shape[0]
    dist.all_reduce(sizes)
    counts = sizes.tolist()
    longest = max(counts)
    padded = local
    if local.shape[0] < longest:
        pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
        padded = torch.cat([local, pad], dim=0)
    parts = all_gather(padded.contiguous())
    gathered = torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)], dim=0)
    return gathered, sum(counts[:rank])


def _gather_texts(texts: Sequence[str]) -> list[str]:
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(texts))
    return [t for part in parts for t in part]


class StudentForward(nn.Module):
    """The module DDP wraps: its parameters are the student's, its forward is the student's
    ``forward_scores``. DDP must see the forward pass to arm its gradient hooks, and the students'
    ``forward`` methods are not all ``forward_scores`` (a plain object holding a ``.model``)."""

    def __init__(self, student: Any, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        object.__setattr__(self, "_student", student)  # not registered twice when student is module

    def forward(self, queries: list[str], docs: list[list[str]], mask: Tensor | None = None) -> Any:
        return self._student.forward_scores(queries, docs, mask)


class _DDPStudent:
    """What the trainer calls instead of the student under DDP: ``forward_scores`` through DDP."""

    def __init__(self, ddp: nn.Module) -> None:
        self.ddp = ddp

    def forward_scores(self, queries: list[str], docs: list[list[str]], mask: Tensor | None = None) -> Any:
        return self.ddp(queries, docs, mask)


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size of this process; the hooks the trainer calls."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def detect(cls) -> DistributedContext:
        """This process's context: from an initialised ``torch.distributed``; else, when launched by
        ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment), the process group
        is initialised here (``env://``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``); else single."""
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if not _initialised():
            world = int(os.environ.get("WORLD_SIZE", "1") or 1)
            if world <= 1:
                return SINGLE_PROCESS
            missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
            if missing:
                raise RuntimeError(
                    f"WORLD_SIZE={world} is set but {missing} are not: start distributed training with "
                    "`torchrun --nproc_per_node N -m distilir train ...` (or accelerate launch), which sets "
                    "them all, or unset WORLD_SIZE for a single process."
                )
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend)
            atexit.register(_destroy)
        if dist.get_world_size() == 1:
            return SINGLE_PROCESS
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, student: Any, module: nn.Module) -> Any:
        """The object whose ``forward_scores`` the trainer calls: the student itself in a single
        process, a DDP-wrapped :class:`StudentForward` otherwise. ``find_unused_parameters`` because
        students carry weights the loss never reaches (BERT's pooler under mean pooling);
        ``broadcast_buffers=False`` because their buffers (position ids) never change."""
        if not self.enabled:
            return student
        from torch.nn.parallel import DistributedDataParallel

        device_ids = None
        param = next(module.parameters(), None)
        if param is not None and param.device.type == "cuda":
            device_ids = [param.device.index]
        ddp = DistributedDataParallel(
            StudentForward(student, module),
            device_ids=device_ids,
            broadcast_buffers=False,
            find_unused_parameters=True,
        )
        return _DDPStudent(ddp)

    @contextlib.contextmanager
    def no_sync(self, wrapped: Any, sync: bool) -> Iterator[None]:
        """Skip DDP's gradient all-reduce for this backward pass unless ``sync`` (gradient
        accumulation: only the last micro-batch of a step synchronises)."""
        if sync or not isinstance(wrapped, _DDPStudent):
            yield
            return
        with wrapped.ddp.no_sync():
            yield

    def gather_documents(self, embeddings: Tensor) -> tuple[Tensor, int]:
        """The ``GatherFn`` of :class:`distilir.losses.InfoNCELoss`: all processes' documents."""
        return gather_with_grad(embeddings) if self.enabled else (embeddings, 0)

    def gather_in_batch(self, embeddings: Tensor, texts: Sequence[str]) -> tuple[Tensor, int, list[str]]:
        """The students' in-batch hook: every process's document embeddings (with gradients, see
        :func:`gather_with_grad`), the offset of this process's, and every process's document texts
        (to mask copies of a query's positive held by another process)."""
        if not self.enabled:
            return embeddings, 0, list(texts)
        gathered, offset = gather_with_grad(embeddings)
        return gathered, offset, _gather_texts(texts)

    def all_reduce_gradients(self, parameters: Any) -> None:
        """Average ``.grad`` of ``parameters`` over processes (in place). The trainer lets DDP do this;
        kept for students trained outside DDP."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def mean(self, value: float) -> float:
        """The mean of a float over processes (for logging the loss)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every process, by rank (e.g. each process's RNG state for a checkpoint)."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, value)
        return parts

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def _destroy() -> None:
    import torch.distributed as dist

    if _initialised():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


SINGLE_PROCESS = DistributedContext()
