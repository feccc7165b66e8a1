"""The hook for distributed (multi-process) training.

Single-process training — the only mode the tests run — uses :data:`SINGLE_PROCESS`, whose methods
are no-ops. Under ``torchrun`` (``torch.distributed`` initialised before the trainer is built),
:meth:`DistributedContext.detect` returns a context that

* shards the data: every process reads a disjoint slice of the same seeded permutation
  (see :class:`distilir.training.data.ListSampler`);
* averages gradients over processes after each backward pass (:meth:`all_reduce_gradients`), so all
  replicas take the same optimiser step — simpler than wrapping the three student kinds in
  ``DistributedDataParallel`` and equivalent for correctness (DDP overlaps the reduction with backward);
* gathers document embeddings across processes for in-batch negatives
  (:meth:`gather_documents`, the ``GatherFn`` of :class:`distilir.losses.InfoNCELoss`), keeping
  gradients for the local part;
* writes checkpoints, metrics and the final student from rank 0 only (:attr:`is_main`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["SINGLE_PROCESS", "DistributedContext", "gather_with_grad"]


def gather_with_grad(local: Tensor) -> tuple[Tensor, int]:
    """All-gather ``local`` [M, D] from every process into [world * M, D]; return it and the offset of
    this process's rows. ``all_gather`` returns tensors without autograd history, so the local slice
    is put back as the original tensor: gradients flow to this process's embeddings, and the other
    processes' embeddings act as constants (the usual in-batch-negative trick, e.g. DPR, Tevatron).
    All processes must pass tensors of the same shape."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[rank] = local
    return torch.cat(parts, dim=0), rank * local.shape[0]


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def detect(cls) -> DistributedContext:
        """The context of this process: from ``torch.distributed`` when initialised, else single."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), world_size=dist.get_world_size())
        return SINGLE_PROCESS

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather_documents(self, embeddings: Tensor) -> tuple[Tensor, int]:
        return gather_with_grad(embeddings) if self.enabled else (embeddings, 0)

    def all_reduce_gradients(self, parameters: Any) -> None:
        """Average ``.grad`` of ``parameters`` over processes (in place)."""
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

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


SINGLE_PROCESS = DistributedContext()
