"""Checkpoints: everything needed to continue a run exactly where it stopped.

Layout of one checkpoint (``<output_dir>/checkpoints/step-00000040/``)::

    student.pt         student state_dict (exact weights, torch.save)
    optimizer.pt       AdamW state (moments, step counts)
    scheduler.pt       learning-rate schedule position
    loss.pt            state of the loss modules (e.g. TAID's interpolation buffers)
    rng.pt             python, numpy, torch CPU (and CUDA) generator states
    trainer_state.json step, sampler (epoch, position), loss history, evaluations, config hash

Atomicity: everything is written into ``checkpoints/.partial-step-XXXXXXXX/``, each file fsynced, then
the folder is renamed to ``step-XXXXXXXX`` (``os.replace`` of a directory is atomic on POSIX) and the
parent fsynced. A process killed at any moment leaves either a complete checkpoint or a
``.partial-*`` folder that :func:`latest_checkpoint` ignores and the next save removes. Older
checkpoints beyond ``keep_last`` are deleted only after the new one is in place.

Why not ``transformers.Trainer``'s checkpoints: they belong to its loop (see
:mod:`distilir.training.trainer` for why we run our own) and store the data position as a count of
batches to skip by replaying the dataloader; ours stores the sampler state directly.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilir.io import fsync, fsync_dir

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged or does not belong to this run."""


def capture_rng_state() -> dict[str, Any]:
    """States of every global generator a training step may draw from (dropout uses torch's)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    return f"step-{int(step):08d}"


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def save_checkpoint(
    root: str | os.PathLike[str],
    step: int,
    *,
    tensors: Mapping[str, Any],
    state: Mapping[str, Any],
    keep_last: int,
) -> Path:
    """Write a checkpoint atomically and prune old ones.

    ``tensors`` maps file stems (``student``, ``optimizer``, ...) to objects for ``torch.save``;
    ``state`` is JSON-serialisable and becomes ``trainer_state.json`` (written last).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / checkpoint_name(step)
    tmp = root / f".partial-{checkpoint_name(step)}"
    tmp.mkdir()
    try:
        for stem, obj in tensors.items():
            path = tmp / f"{stem}.pt"
            torch.save(obj, path)
            fsync(path)
        path = tmp / STATE_FILE
        path.write_text(json.dumps(state, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        fsync(path)
        fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. a resumed run re-saving its last step)
            trash = root / f".partial-old-{checkpoint_name(step)}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint folder: ``{"state": trainer_state, <stem>: torch object, ...}``."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} is not a complete checkpoint (no {STATE_FILE}). Pass a folder such as "
            "<output_dir>/checkpoints/step-00000040, or resume='auto' to pick the latest complete one."
        )
    try:
        out: dict[str, Any] = {"state": json.loads(state_file.read_text(encoding="utf-8"))}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{state_file} is damaged ({exc}); resume from an earlier checkpoint.") from exc
    for file in sorted(path.glob("*.pt")):
        out[file.stem] = torch.load(file, map_location=map_location, weights_only=True)
    return out
