"""Metadata filters, evaluated *before* ranking (pre-filtering), shared by every index kind.

The grammar (anything outside it is a :class:`FilterError` naming the offending key)::

    filter     := { clause, ... }                 every clause must hold ({} : no filter)
    clause     := "$and": [filter, ...]           all of them (a non-empty list)
                | "$or":  [filter, ...]           at least one of them (a non-empty list)
                | "$not": filter                  not this one
                | "$lenient": true | false        allow fields no document has (see below)
                | FIELD: condition                FIELD: any name not starting with "$"
    condition  := scalar                          same as {"$eq": scalar}
                | [scalar, ...]                   same as {"$in": [...]}
                | { op, ... }                     every op must hold (a non-empty mapping)
    op         := "$eq" | "$ne": scalar
                | "$gt" | "$gte" | "$lt" | "$lte": number or string
                | "$in" | "$nin": [scalar, ...]
                | "$exists": true | false         (a JSON boolean, not "false")
                | "$not": condition
    scalar     := string | number | boolean | null

Examples::

    {"year": 2020}
    {"lang": ["en", "de"]}
    {"year": {"$gte": 2018, "$lt": 2021}, "source": {"$exists": True}}
    {"$or": [{"lang": "en"}, {"$and": [{"lang": "de"}, {"year": {"$gte": 2020}}]}]}

A comparison with a missing field or a value of another type (``"abc" > 3``) does not hold. A
filter naming a field that no document of the index has is an error (it would silently match
nothing, or everything under ``$ne``), unless the filter says ``"$lenient": true``.

Indexes turn a filter into the set of internal positions that pass (``allowed_positions``) and
restrict the search to them, so a filtered search still returns ``k`` hits when ``k`` documents
pass. Hand-written because it is a small grammar and each index backend needs the positions, not a
query language: FAISS takes an ``IDSelector``, bm25s a weight mask.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from distilir_index.base import IndexError_

__all__ = ["FilterError", "allowed_positions", "compile_filter", "filter_fields", "filter_size"]

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()
_SCALARS = (str, int, float, bool, type(None))
_ORDERED = (str, int, float)
_LOGICAL = ("$and", "$or", "$not", "$lenient")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda v, x: v > x,
    "$gte": lambda v, x: v >= x,
    "$lt": lambda v, x: v < x,
    "$lte": lambda v, x: v <= x,
}
OPERATORS = ("$eq", "$ne", *_COMPARE, "$in", "$nin", "$exists", "$not")
_EXAMPLE = "e.g. {'year': {'$gte': 2020}} or {'$or': [{'lang': 'en'}, {'lang': 'de'}]}"


class FilterError(IndexError_, ValueError):
    """A filter outside the grammar of :mod:`distilir_index.filters`, or naming an unknown field."""


def _kind(value: Any) -> str:
    return type(value).__name__


def _members(op: str, field: str, operand: Any) -> Collection[Any]:
    if not isinstance(operand, (list, tuple, set, frozenset)):
        raise FilterError(f"{op} on field {field!r} needs a list, got {_kind(operand)}: {operand!r}")
    for v in operand:
        if not isinstance(v, _SCALARS):
            raise FilterError(f"{op} on field {field!r} takes scalars, got a {_kind(v)}: {v!r}")
    try:
        return frozenset(operand)  # O(1) membership: a 50,000-value $in stays cheap per document
    except TypeError:  # pragma: no cover - scalars are hashable
        return list(operand)


def _operator(field: str, op: str, operand: Any) -> Predicate:
    if op == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(
                f"$exists on field {field!r} needs true or false (a boolean), got {_kind(operand)}: "
                f"{operand!r}"
            )
        return lambda m: (m.get(field, _MISSING) is not _MISSING) == operand
    if op == "$not":
        inner = _condition(field, operand)
        return lambda m: not inner(m)
    if op in ("$in", "$nin"):
        members = _members(op, field, operand)

        def member(m: Mapping[str, Any]) -> bool:
            try:
                return m.get(field) in members
            except TypeError:  # an unhashable metadata value (a list) is in no set of scalars
                return False

        return member if op == "$in" else (lambda m: not member(m))
    if op in ("$eq", "$ne"):
        if not isinstance(operand, _SCALARS):
            raise FilterError(f"{op} on field {field!r} takes a scalar, got a {_kind(operand)}: {operand!r}")
        if op == "$eq":
            return lambda m: m.get(field) == operand
        return lambda m: m.get(field) != operand
    if op in _COMPARE:
        if not isinstance(operand, _ORDERED) or isinstance(operand, bool):
            raise FilterError(
                f"{op} on field {field!r} takes a number or a string, got {_kind(operand)}: {operand!r}"
            )
        fn = _COMPARE[op]

        def compare(m: Mapping[str, Any]) -> bool:
            value = m.get(field)
            if value is None or isinstance(value, bool):
                return False
            try:
                return bool(fn(value, operand))
            except TypeError:  # incomparable types (str > int) mean "does not pass"
                return False

        return compare
    raise FilterError(
        f"unknown filter operator {op!r} on field {field!r}; expected one of {sorted(OPERATORS)}"
    )


def _condition(field: str, cond: Any) -> Predicate:
    if isinstance(cond, (list, tuple, set, frozenset)):
        cond = {"$in": list(cond)}
    elif not isinstance(cond, Mapping):
        if not isinstance(cond, _SCALARS):
            raise FilterError(f"field {field!r} takes a scalar, a list or operators, got {_kind(cond)}")
        cond = {"$eq": cond}
    if not cond:
        raise FilterError(
            f"the condition on field {field!r} is empty ({{}}); give at least one operator, {_EXAMPLE}"
        )
    checks = []
    for op, operand in cond.items():
        if not isinstance(op, str) or not op.startswith("$"):
            raise FilterError(
                f"{op!r} inside the condition on field {field!r} is not an operator; expected one of "
                f"{sorted(OPERATORS)}, {_EXAMPLE}"
            )
        checks.append(_operator(field, op, operand))
    if len(checks) == 1:
        return checks[0]
    return lambda m: all(c(m) for c in checks)


def _filters(op: str, operand: Any) -> list[Predicate]:
    if not isinstance(operand, (list, tuple)) or not operand:
        raise FilterError(f"{op} needs a non-empty list of filters, got {_kind(operand)}: {operand!r}")
    out = []
    for sub in operand:
        if not isinstance(sub, Mapping):
            raise FilterError(f"each filter in {op} must be a mapping, got {_kind(sub)}: {sub!r}")
        out.append(_compile(sub))
    return out


def _compile(spec: Mapping[str, Any]) -> Predicate:
    checks: list[Predicate] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys must be strings, got {_kind(key)}: {key!r}")
        if key == "$lenient":
            if not isinstance(value, bool):
                raise FilterError(f"$lenient needs true or false, got {_kind(value)}: {value!r}")
            continue
        if key == "$and":
            subs = _filters(key, value)
            checks.append(lambda m, subs=subs: all(s(m) for s in subs))
        elif key == "$or":
            subs = _filters(key, value)
            checks.append(lambda m, subs=subs: any(s(m) for s in subs))
        elif key == "$not":
            if not isinstance(value, Mapping):
                raise FilterError(f"$not needs a filter (a mapping), got {_kind(value)}: {value!r}")
            sub = _compile(value)
            checks.append(lambda m, sub=sub: not sub(m))
        elif key.startswith("$"):
            raise FilterError(
                f"unknown filter key {key!r}: at the top of a filter, keys are field names or one of "
                f"{list(_LOGICAL)}; operators such as '$gte' go inside a field's condition, {_EXAMPLE}"
            )
        else:
            checks.append(_condition(key, value))
    if len(checks) == 1:
        return checks[0]
    return lambda m: all(c(m) for c in checks)


def _check_spec(spec: Any) -> Mapping[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise FilterError(
            f"a filter must be a mapping of metadata field to condition, got {_kind(spec)}: {spec!r}; "
            f"{_EXAMPLE}"
        )
    return spec


def compile_filter(spec: Mapping[str, Any] | None) -> Predicate | None:
    """Turn a filter mapping into a predicate over a document's metadata (None: no filter)."""
    spec = _check_spec(spec)
    if not spec or set(spec) == {"$lenient"}:
        if spec:
            _compile(spec)  # still checks the flag's type
        return None
    return _compile(spec)


def filter_fields(spec: Mapping[str, Any] | None) -> set[str]:
    """The metadata fields a filter names, at any depth."""
    spec = _check_spec(spec)
    fields: set[str] = set()
    for key, value in (spec or {}).items():
        if key in ("$and", "$or") and isinstance(value, (list, tuple)):
            for sub in value:
                fields |= filter_fields(sub) if isinstance(sub, Mapping) else set()
        elif key == "$not" and isinstance(value, Mapping):
            fields |= filter_fields(value)
        elif isinstance(key, str) and not key.startswith("$"):
            fields.add(key)
    return fields


def filter_size(spec: Any) -> int:
    """How many terms a filter holds (keys, operators and list members, at any depth): its cost,
    bounded by the service setting ``max_filter_terms``."""
    if isinstance(spec, Mapping):
        return sum(1 + filter_size(v) for v in spec.values())
    if isinstance(spec, (list, tuple, set, frozenset)):
        return sum(max(1, filter_size(v)) for v in spec)
    return 0


def _unknown_fields(
    spec: Mapping[str, Any], metadata: Sequence[Mapping[str, Any]], candidates: np.ndarray
) -> None:
    """Raise when the filter names a field no document has (skipped with ``"$lenient": true``)."""
    if spec.get("$lenient") is True:
        return
    wanted = filter_fields(spec)
    if not wanted:
        return
    seen: set[str] = set()
    for positions in (candidates, range(len(metadata))):  # the candidates first: usually enough
        for p in positions:
            seen.update(f for f in wanted if f in metadata[p])
            if seen == wanted:
                return
    missing = sorted(wanted - seen)
    present: set[str] = set()
    for m in metadata[:1000]:
        present.update(m)
    raise FilterError(
        f"no document of this index has the field(s) {missing}, so the filter would match nothing "
        f"(or everything, under $ne / $nin / $exists: false); fields present: "
        f"{sorted(present)[:30] or 'none (the documents have no metadata)'}. Fix the field name, or "
        'add "$lenient": true to the filter to allow fields no document has.'
    )


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
        assert spec is not None
        _unknown_fields(spec, metadata, candidates)
        keep = np.fromiter((predicate(metadata[p]) for p in candidates), dtype=bool, count=len(candidates))
        candidates = candidates[keep]
    return candidates
