"""The distributed hook with two real processes (gloo on CPU): gathered in-batch documents carry the
gradient of every process's loss back to the local part, gradients are averaged, the sampler shards
the data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from distilir.training import DistributedContext
from distilir.training.distributed import SINGLE_PROCESS, gather_with_grad

WORKER = r"""
import json, sys, torch, torch.distributed as dist
from distilir.training.distributed import DistributedContext
from distilir.training.data import ListSampler
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], rank=rank, world_size=2)
ctx = DistributedContext.detect()
local = torch.full((2, 3), float(rank + 1), requires_grad=True)       # this process's 2 documents
gathered, offset = ctx.gather_documents(local)
weights = torch.arange(12.0).reshape(4, 3)
(gathered * weights).sum().backward()                                  # d/d local = own rows of weights
param = torch.nn.Parameter(torch.zeros(2)); param.grad = torch.full((2,), float(rank))
ctx.all_reduce_gradients([param])
sampler = ListSampler(10, seed=5, rank=ctx.rank, world_size=ctx.world_size)
print(json.dumps({"rank": ctx.rank, "world": ctx.world_size, "offset": offset, "gathered": gathered.tolist(),
                  "grad": local.grad.tolist(), "avg": param.grad.tolist(), "mean": ctx.mean(float(rank)),
                  "items": [i for _, i in sampler.next_indices(5)]}))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_context_is_a_no_op():
    import torch

    assert DistributedContext.detect() == SINGLE_PROCESS and SINGLE_PROCESS.is_main
    x = torch.ones(2, 2, requires_grad=True)
    assert gather_with_grad(x) == (x, 0)
    assert SINGLE_PROCESS.mean(3.5) == 3.5


@pytest.mark.slow  # two fresh interpreters importing torch: several CPU-seconds on the shared machine
def test_two_processes_gather_with_local_gradients(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    weights = [[3 * i + j for j in range(3)] for i in range(4)]
    for r, o in enumerate(outs):
        assert o["rank"] == r and o["world"] == 2 and o["offset"] == 2 * r
        assert o["gathered"] == [[1.0] * 3, [1.0] * 3, [2.0] * 3, [2.0] * 3]
        # this process's rows get the gradient of both processes' losses (each computed the same
        # sum here), so that DDP's average is the gradient of the global-batch loss
        assert o["grad"] == [[2 * w for w in row] for row in weights[2 * r : 2 * r + 2]]
        assert o["avg"] == [0.5, 0.5] and o["mean"] == 0.5
    assert sorted(outs[0]["items"] + outs[1]["items"]) == list(range(10))
