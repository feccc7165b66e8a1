"""Candidate lists on disk: a TREC run file plus ``<file>.manifest.json`` beside it (what retrieved
them, with which settings, over which corpus and queries), so a teacher store can name its source."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distilir.types import Run

__all__ = ["manifest_path", "read_candidates", "write_candidates"]


def manifest_path(path: str | os.PathLike[str]) -> Path:
    return Path(str(path) + ".manifest.json")


def write_candidates(
    run: Run, path: str | os.PathLike[str], info: dict[str, Any], tag: str = "distilir"
) -> Path:
    """Write ``run`` as a TREC run file and its manifest, each atomically (run first, manifest last)."""
    from distilir import __version__
    from distilir.data.trec import write_run

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_run(run, path, tag=tag)
    manifest = {
        "kind": "candidates",
        "producer": {"name": "distilir", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "queries": len(run),
        "pairs": sum(len(v) for v in run.values()),
        **info,
    }
    tmp = manifest_path(path).with_suffix(".partial")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path(path))
    return path


def read_candidates(path: str | os.PathLike[str]) -> tuple[Run, dict[str, Any]]:
    """Read a candidates run file and its manifest (an empty dict when the file has none)."""
    from distilir.data.trec import read_run

    m = manifest_path(path)
    info = json.loads(m.read_text(encoding="utf-8")) if m.is_file() else {}
    return read_run(path), info
