"""distilir's artifact I/O: the file-safety primitives of :mod:`distilir_index.io` (atomic files and
folders, fsync, sha256) plus the ``producer`` record every distilir manifest carries."""

from __future__ import annotations

import platform

from distilir_index.io import (
    atomic_directory,
    atomic_write,
    fsync,
    fsync_dir,
    fsync_tree,
    sha256_file,
    write_atomic,
)

__all__ = [
    "atomic_directory",
    "atomic_write",
    "fsync",
    "fsync_dir",
    "fsync_tree",
    "producer",
    "sha256_file",
    "write_atomic",
]


def producer() -> dict[str, str]:
    """What wrote an artifact: ``{"name": "distilir", "version", "python"}``."""
    from distilir import __version__

    return {"name": "distilir", "version": __version__, "python": platform.python_version()}
