"""The `Index` protocol, search hits, and the on-disk artifact format every index shares.

On disk an index is a directory::

    my-index/
      manifest.json          # the commit point: what built it, with which settings, over which corpus
      <name>.<generation>.*  # data files of the current generation, named in manifest["files"]

Saving is atomic without ever deleting the directory: data files of a new generation are written
beside the old ones and fsynced, then ``manifest.json`` is replaced with ``os.replace`` (atomic on
POSIX), and only then are the previous generation's files removed. A process killed at any moment
leaves a manifest that names complete files, so the previous index (or the new one) still loads.

Manifest schema (``format: distilir-index/1``)::

    {
      "format": "distilir-index/1",
      "kind": "bm25" | "dense" | "sparse" | "hybrid",
      "generation": int,                 # increases by one on every save
      "files": {role: filename},         # data files of this generation, relative to the directory
      "producer": {"name": "distilir-index", "version": str, "python": str},
      "created": ISO-8601 UTC,           # this generation
      "settings": {...},                 # index-specific (k1/b, FAISS factory string, ...)
      "encoder": {...} | null,           # see distilir_index.encoders.Encoder.describe()
      "corpus": {"count": int, "fingerprint": "sha256:..."}
    }
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from distilir_index.io import fsync, fsync_dir

__all__ = [
    "FORMAT",
    "ArtifactDir",
    "BaseIndex",
    "CorpusFingerprint",
    "Hit",
    "Index",
    "IndexError_",
    "GenerationMissing",
    "ManifestError",
    "read_manifest",
]

FORMAT = "distilir-index/1"
MANIFEST = "manifest.json"
_GENERATION_FILE = re.compile(r"^([^.]+)\.g\d+((?:\..*)?)$")


def _family(name: str) -> re.Pattern[str] | None:
    """The names of every generation of the data file ``name`` (``docs.g3.jsonl`` -> ``docs.g<N>.jsonl``)."""
    match = _GENERATION_FILE.match(name)
    if match is None:
        return None
    return re.compile(re.escape(match.group(1)) + r"\.g\d+" + re.escape(match.group(2)))


class IndexError_(Exception):  # noqa: N801 - avoid shadowing the builtin IndexError
    """Base class of errors raised by distilir_index for bad input or incompatible artifacts."""


class ManifestError(IndexError_):
    """A directory is not a distilir index, or its manifest does not fit what was asked."""


class GenerationMissing(ManifestError):
    """A data file the manifest names is gone: the directory is damaged, or a save of the same
    folder replaced that generation while it was being read (then reading again finds the new one)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result. ``score`` is higher-is-better; its scale depends on the index kind."""

    id: str
    score: float
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Index(Protocol):
    """What every index does. ``search`` takes a batch of queries and returns, per query, at most
    ``k`` hits sorted by descending score."""

    kind: str

    def add(self, ids: Sequence[str], *args: Any, **kwargs: Any) -> None: ...

    def delete(self, ids: Iterable[str]) -> int: ...

    def search(self, queries: Sequence[Any], k: int = 10, **kwargs: Any) -> list[list[Hit]]: ...

    def save(self, path: str | os.PathLike[str]) -> Path: ...

    def __len__(self) -> int: ...


class BaseIndex:
    """What every index class shares: its registry identity and the checks of search arguments.

    Subclasses set ``kind`` (the manifest's and the registry's name) and ``help`` (one line for
    ``--help`` and error messages), implement the :class:`Index` methods and a ``load(path, **kw)``
    classmethod, and override :meth:`from_settings` when their constructor does not take the
    keyword settings of :func:`distilir_index.make_index` directly (dense and sparse build their
    encoder from ``model=``)."""

    kind: ClassVar[str] = ""
    help: ClassVar[str] = ""
    #: The query/document encoder of model-backed kinds (dense, sparse); None for BM25 and fusions.
    encoder: Any = None

    def describe(self) -> dict[str, Any]:
        """What the index is (kind, settings, counts); every kind adds its own."""
        return {"kind": self.kind}

    @classmethod
    def from_settings(cls, **settings: Any) -> BaseIndex:
        """A new, empty index from keyword settings (``make_index(kind, **settings)``)."""
        try:
            return cls(**settings)
        except TypeError as exc:
            raise TypeError(
                f"cannot build a {cls.kind!r} index with settings {sorted(settings)}: {exc}"
            ) from exc

    @staticmethod
    def check_k(k: Any) -> int:
        """``k`` as an int; raises ValueError unless it is a positive integer (bools refused)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        return int(k)


class CorpusFingerprint:
    """Order-independent sha256 over (doc id, text) pairs, so that an index built from the same
    documents in a different order has the same fingerprint. Feed documents with :meth:`update`."""

    def __init__(self) -> None:
        self._acc = 0
        self.count = 0

    def update(self, doc_id: str, text: str = "") -> None:
        digest = sha256(doc_id.encode() + b"\x00" + text.encode()).digest()
        # XOR of per-document digests: commutative, so order does not matter; the count is kept
        # beside it so that duplicated documents cannot cancel each other unnoticed.
        self._acc ^= int.from_bytes(digest, "big")
        self.count += 1

    def hexdigest(self) -> str:
        return "sha256:" + f"{self._acc:064x}"

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "fingerprint": self.hexdigest()}


def _producer() -> dict[str, str]:
    from distilir_index import __version__

    return {"name": "distilir-index", "version": __version__, "python": platform.python_version()}


def read_manifest(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read and check ``path/manifest.json``; if ``kind`` is given, the manifest must be of that kind."""
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        what = "does not exist" if not path.exists() else "has no manifest.json"
        raise ManifestError(
            f"{path} {what}: expected a directory written by a distilir-index save(). "
            "Build one with `distilir-index build` or Index.save()."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{file} is not valid JSON ({exc}); the index directory is damaged.") from exc
    if manifest.get("format") != FORMAT:
        raise ManifestError(
            f"{file} has format {manifest.get('format')!r}; expected {FORMAT!r}. "
            "It was written by another tool or an incompatible version; rebuild the index."
        )
    if kind is not None and manifest.get("kind") != kind:
        raise ManifestError(
            f"{path} holds a {manifest.get('kind')!r} index, not a {kind!r} one. "
            "Load it with distilir_index.load_index(path), which picks the right class."
        )
    for role, name in manifest.get("files", {}).items():
        if not (path / name).exists():
            raise GenerationMissing(f"{path}: file {name!r} ({role}) named by the manifest is missing.")
    return manifest


class ArtifactDir:
    """Writes one generation of an index directory atomically (see the module docstring).

    Usage::

        with ArtifactDir(path, kind="dense") as art:
            art.write("vectors", "vectors.npy", lambda f: np.save(f, x))   # f is a Path to write
            art.commit(settings={...}, encoder={...}, corpus={...})
    """

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        self.path = Path(path)
        self.kind = kind
        self.path.mkdir(parents=True, exist_ok=True)
        previous = None
        if (self.path / MANIFEST).is_file():
            try:
                previous = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                previous = None
        self._previous = previous or {}
        self.generation = int(self._previous.get("generation", 0)) + 1
        self._files: dict[str, str] = {}
        self._committed = False

    def __enter__(self) -> ArtifactDir:
        return self

    def filename(self, name: str) -> str:
        stem, dot, ext = name.partition(".")
        return f"{stem}.g{self.generation}{dot}{ext}"

    def write(self, role: str, name: str, writer: Callable[[Path], None]) -> Path:
        """Call ``writer(tmp_path)`` to produce a data file, then fsync it under its final name."""
        final = self.path / self.filename(name)
        tmp = final.with_name(final.name + ".partial")
        writer(tmp)
        if tmp.is_dir():
            for p in tmp.rglob("*"):
                if p.is_file():
                    fsync(p)
        else:
            fsync(tmp)
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
        self._files[role] = final.name
        return final

    def commit(
        self,
        *,
        settings: Mapping[str, Any],
        corpus: Mapping[str, Any],
        encoder: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict:
        manifest = {
            "format": FORMAT,
            "kind": self.kind,
            "generation": self.generation,
            "files": dict(self._files),
            "producer": _producer(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": dict(settings),
            "encoder": dict(encoder) if encoder is not None else None,
            "corpus": dict(corpus),
            **(dict(extra) if extra else {}),
        }
        tmp = self.path / (MANIFEST + ".partial")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync(tmp)
        os.replace(tmp, self.path / MANIFEST)
        fsync_dir(self.path)
        self._committed = True
        self._sweep()
        return manifest

    def _sweep(self) -> None:
        """Remove files of earlier generations and leftovers of interrupted saves, and nothing else:
        only the files the previous manifest names, files named like one this save wrote in another
        generation (``docs.g3.jsonl`` beside ``docs.g4.jsonl``), and their ``.partial`` copies. A file
        the index did not write (``notes.txt``, ``photo.g2.jpg``) stays, whatever the folder was before."""
        keep = set(self._files.values()) | {MANIFEST}
        named = set(self._previous.get("files", {}).values())
        families = {_family(name) for name in (*self._files.values(), *named)} - {None}
        for p in self.path.iterdir():
            if p.name in keep:
                continue
            name = p.name.removesuffix(".partial")
            if p.name in named or name == MANIFEST or any(f.fullmatch(name) for f in families):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            # An aborted save: drop what this generation wrote; the previous manifest still rules.
            for name in self._files.values():
                p = self.path / name
                if name not in self._previous.get("files", {}).values():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
