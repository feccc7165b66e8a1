"""Small file helpers shared by the readers and writers of :mod:`distilir.data`.

- :func:`open_text` opens plain or gzip text files the same way (chosen by the ``.gz`` suffix).
- :func:`atomic_write` (from :mod:`distilir.io`) writes a file beside its destination, fsyncs it, and
  moves it into place with ``os.replace``, so a reader never sees half a file.
- :func:`sha256_file` hashes a file (hex digest).
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import IO

from distilir.io import atomic_write
from distilir.io import sha256_file as io_sha256_file

__all__ = ["atomic_write", "open_text", "sha256_file"]


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` for reading UTF-8 text, decompressing it on the fly when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes (as stored, i.e. of the ``.gz`` itself for compressed files),
    without the ``sha256:`` prefix (the form dataset fingerprints were built from)."""
    return io_sha256_file(path).removeprefix("sha256:")
