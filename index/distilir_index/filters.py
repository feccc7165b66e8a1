"""Metadata filters, evaluated *before* ranking (pre-filtering), shared by every index kind.

A filter is a mapping from a metadata field to a condition; all conditions must hold::

    {"year": 2020}                          # equality
    {"lang": ["en", "de"]}                  # membership (same as {"$in": [...]})
    {"year": {"$gte": 2018, "$lt": 2021}}   # comparisons: $eq $ne $gt $gte $lt $lte $in $nin
    {"source": {"$exists": True}}

Indexes turn a filter into the set of internal positions that pass (``allowed_positions``) and
restrict the search to them, so a filtered search still returns ``k`` hits when ``k`` documents
pass. Hand-written because it is a few lines and each index backend needs the positions, not a
query language: FAISS takes an ``IDSelector``, bm25s a weight mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from distilir_index.base import IndexError_

__all__ = ["FilterError", "allowed_positions", "compile_filter"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda v, x: v == x,
    "$ne": lambda v, x: v != x,
    "$gt": lambda v, x: v is not None and v > x,
    "$gte": lambda v, x: v is not None and v >= x,
    "$lt": lambda v, x: v is not None and v < x,
    "$lte": lambda v, x: v is not None and v <= x,
    "$in": lambda v, x: v in x,
    "$nin": lambda v, x: v not in x,
}
_MISSING = object()


class FilterError(IndexError_, ValueError):
    """A filter that cannot be evaluated: unknown operator, wrong operand type."""


def _condition(field: str, cond: Any) -> Callable[[Mapping[str, Any]], bool]:
    if isinstance(cond, (list, tuple, set, frozenset)):
        cond = {"$in": list(cond)}
    if not isinstance(cond, Mapping):
        cond = {"$eq": cond}
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for op, operand in cond.items():
        if op == "$exists":
            want = bool(operand)
            checks.append(lambda m, want=want: (m.get(field, _MISSING) is not _MISSING) == want)
            continue
        if op not in _OPS:
            raise FilterError(
                f"unknown filter operator {op!r} on field {field!r}; expected one of "
                f"{sorted([*_OPS, '$exists'])}, e.g. {{{field!r}: {{'$gte': 2020}}}}"
            )
        if op in ("$in", "$nin") and not isinstance(operand, (list, tuple, set, frozenset)):
            raise FilterError(
                f"{op} on field {field!r} needs a list, got {type(operand).__name__}: {operand!r}"
            )
        fn = _OPS[op]

        def check(m: Mapping[str, Any], fn=fn, operand=operand) -> bool:
            try:
                return bool(fn(m.get(field), operand))
            except TypeError:  # comparing incomparable types (e.g. str > int) means "does not pass"
                return False

        checks.append(check)
    return lambda m: all(c(m) for c in checks)


def compile_filter(spec: Mapping[str, Any] | None) -> Callable[[Mapping[str, Any]], bool] | None:
    """Turn a filter mapping into a predicate over a document's metadata (None: no filter)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise FilterError(
            f"a filter must be a mapping of metadata field to condition, got {type(spec).__name__}: "
            f"{spec!r}; e.g. {{'year': {{'$gte': 2020}}}}"
        )
    if not spec:
        return None
    conditions = [_condition(str(f), c) for f, c in spec.items()]
    return lambda m: all(c(m) for c in conditions)


def allowed_positions(
    metadata: Sequence[Mapping[str, Any]],
    spec: Mapping[str, Any] | None = None,
    ids: Iterable[str] | None = None,
    id_to_position: Mapping[str, int] | None = None,
    live: np.ndarray | None = None,
) -> np.ndarray | None:
    """Positions (int64, sorted) of documents that pass ``spec`` and are among ``ids``; None when
    neither restricts anything. ``live`` masks out deleted positions."""
    predicate = compile_filter(spec)
    if predicate is None and ids is None:
        return None
    if ids is not None:
        if id_to_position is None:
            raise ValueError("id_to_position is needed to filter by ids")
        if isinstance(ids, str):
            raise FilterError("ids must be a list of document ids, got a single string; wrap it in a list")
        candidates = np.fromiter((id_to_position[i] for i in ids if i in id_to_position), dtype=np.int64)
        candidates = np.unique(candidates)
    else:
        candidates = np.arange(len(metadata), dtype=np.int64)
    if live is not None:
        candidates = candidates[live[candidates]]
    if predicate is not None:
        keep = np.fromiter((predicate(metadata[p]) for p in candidates), dtype=bool, count=len(candidates))
        candidates = candidates[keep]
    return candidates
