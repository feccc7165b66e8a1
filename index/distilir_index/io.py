"""The file-safety primitives every artifact writer of distilir and distilir-index uses.

- :func:`fsync`, :func:`fsync_dir`, :func:`fsync_tree`: push a file, a directory entry or a whole folder
  to disk (directories are fsynced where the filesystem allows it).
- :func:`write_atomic`: ``writer(tmp)`` beside the destination, fsync, ``os.replace`` (atomic on
  POSIX), fsync the directory; the temporary file is removed if anything fails, KeyboardInterrupt
  included, so a reader sees the old file or the new one, never half of one.
- :func:`atomic_write`: the same as a context manager yielding a text handle (``.gz`` destinations are
  written gzip-compressed with a reproducible header).
- :func:`atomic_directory`: a folder built under a temporary name and swapped into place (an existing
  folder is moved aside first and removed after the new one is in place).
- :func:`sha256_file`: ``"sha256:<hex>"`` of a file's bytes, cached per (path, size, mtime).

Written by hand: these are a few lines over ``os``, and the guarantees (fsync of file and directory,
cleanup on interrupt) are exactly what the crash protocols in the stores' docstrings rely on.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_directory",
    "atomic_write",
    "fsync",
    "fsync_dir",
    "fsync_tree",
    "sha256_file",
    "write_atomic",
]


def fsync(path: str | os.PathLike[str]) -> None:
    """fsync one file (or directory) by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it is durable; filesystems that refuse it are skipped."""
    with contextlib.suppress(OSError):
        fsync(path)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every file below ``root``, then ``root`` itself."""
    for p in Path(root).rglob("*"):
        if p.is_file():
            fsync(p)
    fsync_dir(root)


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` for a temporary path beside ``path``, then move it into place atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        writer(tmp)
        fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Context manager yielding a text handle; the file appears at ``path`` only if the block succeeds.

    A ``.gz`` destination is written gzip-compressed with ``filename=""`` and ``mtime=0`` (the bytes
    are reproducible). The result gets ordinary 0644 permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                with io.TextIOWrapper(gz, encoding=encoding, newline="") as text:
                    yield text
            else:
                with io.TextIOWrapper(raw, encoding=encoding, newline="") as text:
                    yield text
        fsync(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the block succeeds it is fsynced and replaces
    ``path`` (an existing folder is moved aside, then removed). On failure ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.parent / f".{path.name}.partial-{tag}"
    old = path.parent / f".{path.name}.old-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a file's bytes (of a ``.gz`` as stored), once per (path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)
