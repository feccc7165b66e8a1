"""DDP training with two real gloo processes (``torchrun``) against a single process at the same global
batch: the loss curve and the final weights must match, for listwise KL alone and for KL + InfoNCE
with in-batch negatives gathered across the processes; a DDP run stopped after a checkpoint and
resumed must continue the same curve.

The teacher scores are the FAKE lexical teacher's (tests/distilir/training/conftest.py); the student
is the real paraphrase-MiniLM-L3-v2 bi-encoder. Dropout is switched off in both runs: with dropout
the two runs draw different random masks (one generator per process), so they agree only in
distribution."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distilir.training import TrainConfig, Trainer, write_lists_jsonl

WORKER = r"""
import json, sys
import torch
from distilir.training import Trainer, TrainConfig, read_lists_jsonl
from distilir.training._student import build_student

torch.set_num_threads(1)
spec = json.load(open(sys.argv[1]))
lists = read_lists_jsonl(spec["lists"])
out = {}


def student_without_dropout(config):
    student = build_student(config.student, seed=config.optim.seed, device="cpu")
    for m in student.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return student


class Stop(Exception):
    pass


def stop_at(step):
    def callback(trainer, record):
        if record["step"] == step:
            raise Stop
    return callback


for name, run in spec["runs"].items():
    config = TrainConfig.from_dict(run["config"])
    callbacks = [stop_at(run["stop_at"])] if run.get("stop_at") else []
    trainer = Trainer(config, lists=lists, teacher={"fingerprint": "fake"},
                      student=student_without_dropout(config), callbacks=callbacks)
    try:
        result = trainer.train(resume=run.get("resume"))
    except Stop:
        out[name] = {"stopped": trainer.step}
        continue
    rank = trainer.dist.rank
    torch.save(trainer.module.state_dict(), f"{run['config']['output_dir']}/weights-rank{rank}.pt")
    out[name] = {"rank": rank, "world": trainer.dist.world_size, "losses": result.losses,
                 "no_grad": sorted(n for n, p in trainer.module.named_parameters() if p.grad is None),
                 "student_dir": str(result.student_dir) if result.student_dir else None}
print("RESULT " + json.dumps(out))
"""

KL = [{"name": "kl"}]
KL_INFONCE = [{"name": "kl"}, {"name": "infonce", "weight": 0.5, "params": {"temperature": 0.1}}]


def _config(out: Path, batch_size: int, losses: list, **extra) -> dict:
    return {
        "student": {"kind": "bi_encoder", "model": "paraphrase-MiniLM-L3-v2", "max_length": 24},
        "losses": losses,
        "data": {"candidates_per_query": 4, "negatives": "random"},
        "optim": {"batch_size": batch_size, "steps": 3, "lr": 2e-4, "warmup_steps": 0, "seed": 7},
        "output_dir": str(out),
        "progress": False,
        "threads": 1,
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(config: dict, lists) -> tuple[list[float], dict, dict, list[str]]:
    """Losses, initial and final weights, and the weights without gradient of a single-process run."""
    from distilir.training._student import build_student

    cfg = TrainConfig.from_dict(config)
    student = build_student(cfg.student, seed=cfg.optim.seed, device="cpu")
    for m in student.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = Trainer(cfg, lists=lists, teacher={"fingerprint": "fake"}, student=student)
    result = trainer.train()
    no_grad = sorted(n for n, p in trainer.module.named_parameters() if p.grad is None)
    return result.losses, initial, dict(trainer.module.state_dict()), no_grad


@pytest.fixture(scope="module")
def ddp_runs(tiny_lists, tmp_path_factory):
    """One torchrun launch (2 gloo processes, 1 thread each) running every DDP case in turn."""
    root = tmp_path_factory.mktemp("ddp")
    lists_file = write_lists_jsonl(tiny_lists, root / "lists.jsonl")
    runs = {
        "kl": {"config": _config(root / "kl", 2, KL)},
        "kl_infonce": {"config": _config(root / "kl_infonce", 2, KL_INFONCE)},
        "stopped": {
            "config": _config(root / "resumed", 2, KL_INFONCE, checkpoint_every=2),
            "stop_at": 2,
        },
        "resumed": {"config": _config(root / "resumed", 2, KL_INFONCE, checkpoint_every=2), "resume": "auto"},
    }
    spec = root / "spec.json"
    spec.write_text(json.dumps({"lists": str(lists_file), "runs": runs}))
    script = root / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), str(script), str(spec)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2, proc.stdout[-2000:]
    by_rank = {r["kl"]["rank"]: r for r in results}
    return root, by_rank


@pytest.mark.parametrize("case, losses", [("kl", KL), ("kl_infonce", KL_INFONCE)])
def test_ddp_matches_a_single_process_at_the_same_global_batch(ddp_runs, tiny_lists, tmp_path, case, losses):
    root, by_rank = ddp_runs
    ref_losses, initial, ref_weights, ref_no_grad = _single(_config(tmp_path / case, 4, losses), tiny_lists)
    for rank in (0, 1):
        got = by_rank[rank][case]
        assert got["world"] == 2
        assert got["losses"] == pytest.approx(ref_losses, rel=1e-4)
        assert got["no_grad"] == ref_no_grad  # DDP leaves unreached weights (BERT's pooler) untouched
        weights = torch.load(root / case / f"weights-rank{rank}.pt", weights_only=True)
        assert weights.keys() == ref_weights.keys()
        # Compare each tensor's update (final - initial): AdamW divides by sqrt(v), so a weight whose
        # gradient is ~0 moves by a full step of either sign on float noise. Measured: updates agree
        # within 6e-5 (relative norm), except attention key biases, whose gradient is 0 in exact
        # arithmetic (softmax ignores a shift shared by all keys): pure noise, not compared.
        for key, ref in ref_weights.items():
            update = ref.float() - initial[key].float()
            if key.endswith("attention.self.key.bias") or not update.any():
                torch.testing.assert_close(weights[key], ref, rtol=0, atol=2e-5 if update.any() else 0)
                continue
            rel = float((weights[key].float() - initial[key].float() - update).norm() / update.norm())
            assert rel < 1e-3, (key, rel)
    assert ref_losses[0] != pytest.approx(ref_losses[-1], rel=1e-3)  # the weights did move
    # (with InfoNCE over each process's 2 queries only, the KL + InfoNCE curve could not match batch 4)
    # rank 0 alone wrote the run folder
    assert by_rank[0][case]["student_dir"] and by_rank[1][case]["student_dir"] is None
    assert (root / case / "student" / "manifest.json").is_file()
    lines = (root / case / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in lines] == by_rank[0][case]["losses"]


def test_ddp_run_resumes_from_its_checkpoint(ddp_runs):
    _, by_rank = ddp_runs
    for rank in (0, 1):
        assert by_rank[rank]["stopped"] == {"stopped": 2}
        assert by_rank[rank]["resumed"]["losses"] == pytest.approx(
            by_rank[rank]["kl_infonce"]["losses"], rel=1e-6
        )
