"""Checkpoint files: atomic writes, pruning, RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from distilir.training import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from distilir.training.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint


def test_save_load_and_keep_last(tmp_path):
    root = tmp_path / "checkpoints"
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    for step in (2, 4, 6):
        save_checkpoint(
            root, step, tensors={"student": weights}, state={"step": step, "x": [1.5]}, keep_last=2
        )
    assert [s for s, _ in list_checkpoints(root)] == [4, 6]
    ckpt = load_checkpoint(latest_checkpoint(root))
    assert ckpt["state"] == {"step": 6, "x": [1.5]}
    assert torch.equal(ckpt["student"]["w"], weights["w"])
    assert not list(root.glob(".partial-*"))


def test_incomplete_checkpoints_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 1, tensors={}, state={"step": 1}, keep_last=3)
    (root / ".partial-step-00000002").mkdir()  # what a process killed mid-save leaves
    (root / "step-00000003").mkdir()  # no trainer_state.json: not complete
    assert latest_checkpoint(root).name == "step-00000001"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(root / "step-00000003")
    save_checkpoint(root, 4, tensors={}, state={"step": 4}, keep_last=3)
    assert not (root / ".partial-step-00000002").exists()


def test_saving_the_same_step_again_replaces_it(tmp_path):
    root = tmp_path / "c"
    save_checkpoint(root, 5, tensors={"a": torch.zeros(1)}, state={"v": 1}, keep_last=1)
    save_checkpoint(root, 5, tensors={"a": torch.ones(1)}, state={"v": 2}, keep_last=1)
    ckpt = load_checkpoint(root / "step-00000005")
    assert ckpt["state"]["v"] == 2 and float(ckpt["a"]) == 1.0


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path, 1, tensors={"rng": capture_rng_state()}, state={}, keep_last=1)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "step-00000001")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]
