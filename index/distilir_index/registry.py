"""One registry per stage: ``kind -> "module:Class"``, imported on first use, with one name normaliser.

Every pluggable stage of distilir and distilir-index (index kinds here; teachers, losses, students
and query generators in ``distilir``) keeps its components in a :class:`Registry`. The class owns
its ``kind``, its constructor (or ``from_spec``) and its one-line ``help``; configs, CLIs, factories
and ``--help`` read the registry, so adding a component is one module plus one registry line::

    INDEXES = Registry("index", {"bm25": "distilir_index.bm25:BM25Index", ...})
    INDEXES.get("BM25")            # -> BM25Index (imported now, not when the registry was built)
    INDEXES.register("mine", "my_pkg.index:MyIndex")

Kind names are compared after :func:`normalize_kind` (case, surrounding spaces and ``_`` vs ``-`` do
not matter), so ``bi_encoder``, ``Bi-Encoder`` and ``bi-encoder`` are one kind; the canonical
spelling is lowercase with hyphens. Aliases (``ce`` for ``cross-encoder``) are part of the registry.

Hand-written because it is 80 lines of bookkeeping: entry points (``importlib.metadata``) need an
installed distribution per component, which a test or a notebook adding a kind does not have.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Registry", "UnknownKind", "normalize_kind", "parse_options", "parse_value"]


def normalize_kind(name: str) -> str:
    """The canonical spelling of a kind name: lowercase, stripped, ``_`` -> ``-``."""
    if not isinstance(name, str):
        raise TypeError(f"a kind name must be a string, got {type(name).__name__}: {name!r}")
    return name.strip().lower().replace("_", "-")


def parse_value(text: str) -> Any:
    """A spec option's value: ``true``/``false``, ``none``/``null``, an int, a float, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(text: str, *, spec: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The ``key=value&key=value`` part of a component spec (``KIND[:TARGET][?OPTIONS]``, the grammar
    of teacher and query-generator specs) as keyword arguments."""
    out: dict[str, Any] = {}
    for part in filter(None, text.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise error(f"option {part!r} in spec {spec!r} is not key=value; e.g. 'bm25?k1=0.9&b=0.4'")
        out[key.strip()] = parse_value(value.strip())
    return out


class UnknownKind(ValueError):
    """A kind no class is registered for; the message lists the registered kinds."""


class Registry:
    """Components of one stage by kind.

    Args:
        stage: what the components are ("index", "teacher", ...), used in messages.
        entries: kind -> class or ``"module:Class"`` import string.
        aliases: other names -> kind.
        error: the exception class raised for an unknown kind (a subclass of the stage's own error
            keeps ``except TeacherError`` working); it is combined with :class:`UnknownKind`.
    """

    def __init__(
        self,
        stage: str,
        entries: Mapping[str, Any],
        *,
        aliases: Mapping[str, str] | None = None,
        error: type[Exception] = ValueError,
    ) -> None:
        self.stage = stage
        self._entries: dict[str, Any] = {}
        self._aliases = {normalize_kind(a): normalize_kind(k) for a, k in (aliases or {}).items()}
        self._error = (
            error
            if issubclass(error, UnknownKind)
            else type(
                f"Unknown{stage.title().replace(' ', '').replace('-', '')}Kind", (UnknownKind, error), {}
            )
        )
        for kind, cls in entries.items():
            self.register(kind, cls)

    def normalize(self, name: str) -> str:
        """The registered kind ``name`` stands for (aliases resolved); raises for an unknown name."""
        kind = normalize_kind(name)
        kind = self._aliases.get(kind, kind)
        if kind not in self._entries:
            raise self._error(
                f"unknown {self.stage} kind {name!r}; registered kinds: {', '.join(self.kinds())}"
                + (f" (aliases: {', '.join(sorted(self._aliases))})" if self._aliases else "")
            )
        return kind

    def get(self, name: str) -> Any:
        """The class registered for ``name``, imported on first use."""
        kind = self.normalize(name)
        entry = self._entries[kind]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[kind] = entry
        return entry

    def register(self, kind: str, cls: Any, *, replace: bool = False) -> None:
        """Add ``kind`` -> ``cls`` (a class or a ``"module:Class"`` string, imported lazily).

        Registering a kind already registered to something else raises unless ``replace=True``;
        registering the class an import string of the same kind points to is not a conflict."""
        key = normalize_kind(kind)
        if not key:
            raise ValueError(f"a {self.stage} kind must be a non-empty string, got {kind!r}")
        if isinstance(cls, str) and ":" not in cls:
            raise ValueError(f"an import string must look like 'package.module:ClassName', got {cls!r}")
        current = self._entries.get(key)
        if current is not None and current is not cls and current != cls and not replace:
            if not (isinstance(current, str) and not isinstance(cls, str) and self.get(key) is cls):
                raise ValueError(
                    f"{self.stage} kind {key!r} is already registered to {current!r}; pass replace=True "
                    "to override"
                )
        self._entries[key] = cls

    def kinds(self) -> list[str]:
        """The registered kinds (canonical spellings), sorted."""
        return sorted(self._entries)

    def help(self) -> dict[str, str]:
        """kind -> the class's one-line ``help`` class attribute (imports every registered class; each
        stage's base class defines ``help``)."""
        return {kind: self.get(kind).help for kind in self.kinds()}

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        kind = normalize_kind(name)
        return self._aliases.get(kind, kind) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.kinds())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.stage!r}, kinds={self.kinds()})"
