"""Small file helpers shared by the readers and writers of :mod:`distilir.data`.

- :func:`open_text` opens plain or gzip text files the same way (chosen by the ``.gz`` suffix).
- :func:`atomic_write` writes a file beside its destination, fsyncs it, and moves it into place with
  ``os.replace`` (atomic on POSIX), so a reader never sees half a file and an interrupted write
  leaves the previous file intact.
- :func:`sha256_file` hashes a file in 1 MiB blocks.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "open_text", "sha256_file"]


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` for reading UTF-8 text, decompressing it on the fly when it ends in ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Context manager yielding a text handle; the file appears at ``path`` only if the block succeeds.

    The data go to a temporary file in the destination folder (same filesystem, so the final
    ``os.replace`` is a rename), which is flushed and fsynced first. On an exception the temporary
    file is removed and ``path`` is left as it was. A ``.gz`` destination is written gzip-compressed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                # filename="" and mtime=0 keep the bytes reproducible (no temp name or time in the
                # gzip header), like the shared data pack.
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                with io.TextIOWrapper(gz, encoding=encoding, newline="") as text:
                    yield text
            else:
                with io.TextIOWrapper(raw, encoding=encoding, newline="") as text:
                    yield text
        _fsync(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the result ordinary file permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes (as stored, i.e. of the ``.gz`` itself for compressed files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
