"""A real interruption: `distilir train` is SIGKILLed right after a checkpoint lands, then resumed.

Slow (three training processes); the fast suite checks the same property with an in-process stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from distilir.training import write_lists_jsonl

pytestmark = pytest.mark.slow


def _train(tmp_path, name, extra=(), wait_for=None, timeout=600):
    cmd = [
        sys.executable,
        "-m",
        "distilir.training",
        "train",
        "--config",
        str(tmp_path / "train.yaml"),
        "--output_dir",
        str(tmp_path / name),
        *extra,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait_for is None:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        return proc
    deadline = time.monotonic() + timeout
    target = tmp_path / name / "checkpoints" / wait_for / "trainer_state.json"
    while not target.is_file():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {wait_for}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the checkpoint")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc


def test_sigkill_after_a_checkpoint_then_resume_equals_uninterrupted(tiny_lists, tmp_path):
    write_lists_jsonl(tiny_lists, tmp_path / "lists.jsonl")
    (tmp_path / "train.yaml").write_text(f"""
student: {{model: all-MiniLM-L6-v2, max_length: 32}}
losses: [{{name: kl}}, {{name: infonce, weight: 0.1}}]
data: {{lists_file: {tmp_path / "lists.jsonl"}, candidates_per_query: 3}}
optim: {{batch_size: 3, steps: 6, lr: 1.0e-4}}
checkpoint_every: 2
threads: 1
progress: false
""")
    _train(tmp_path, "straight")
    killed = _train(tmp_path, "killed", wait_for="step-00000002")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "student").exists()
    _train(tmp_path, "killed", extra=["--resume", "auto"])

    a = load_file(tmp_path / "straight" / "student" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0)

    def losses(name):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if json.loads(x)["type"] == "train"]

    assert len(losses("straight")) == 6 and losses("killed") == losses("straight")
    manifest = json.loads((tmp_path / "killed" / "student" / "manifest.json").read_text())
    assert [r["step"] for r in manifest["resumed_from"]] == [2]
