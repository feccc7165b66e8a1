"""Plain-text tables of evaluation results, for the CLI and benchmark reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from distilir.evaluation.metrics import EvalResult, EvaluationError
from distilir.evaluation.significance import paired_test

__all__ = ["compare_table", "format_table"]


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def _is_number(value: Any) -> bool:
    """Numbers, and strings that are preformatted numbers (``"0.5187"``, ``"0.6311*"``), align right."""
    if isinstance(value, str):
        try:
            float(value.rstrip("* "))
        except ValueError:
            return False
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *, floatfmt: str = ".4f"
) -> str:
    """An aligned text table: a header, a rule, one line per row.

    ``columns`` defaults to the keys of all rows in first-seen order. Floats are written with
    ``floatfmt``; numeric columns (numbers or preformatted numeric strings) are right-aligned, others
    left-aligned; missing cells are blank.
    """
    if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
        raise EvaluationError("rows must be a list of dicts (one dict per table row).")
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    columns = [str(c) for c in columns]
    if not columns:
        raise EvaluationError("format_table needs at least one column (rows are empty and no columns given).")
    cells = [[_cell(row.get(c), floatfmt) for c in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(c)) or row.get(c) is None for row in rows) and any(c in row for row in rows)
        for c in columns
    ]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(values) for values in cells]
    return "\n".join(out)


def compare_table(
    results: Mapping[str, EvalResult],
    measures: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    alpha: float = 0.05,
    floatfmt: str = ".4f",
) -> str:
    """One row per system, one column per measure; with ``baseline``, a ``*`` marks values whose
    paired t-test against the baseline has ``p < alpha`` (see :func:`paired_test`).

    ``measures`` defaults to the first system's measures.
    """
    if not results:
        raise EvaluationError("compare_table needs at least one {name: EvalResult}.")
    if baseline is not None and baseline not in results:
        raise EvaluationError(f"baseline {baseline!r} is not one of the systems {list(results)}.")
    if not 0.0 < alpha < 1.0:
        raise EvaluationError(f"alpha must be in (0, 1), got {alpha!r}.")
    measures = list(measures or next(iter(results.values())).measures)
    for name, res in results.items():
        missing = [m for m in measures if m not in res.aggregate]
        if missing:
            raise EvaluationError(
                f"system {name!r} was not evaluated with {missing}; it has {list(res.measures)}."
            )
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {"system": name}
        for m in measures:
            value = res.aggregate[m]
            if baseline is not None and name != baseline:
                _, p = paired_test(res, results[baseline], m)
                row[m] = format(value, floatfmt) + ("*" if p < alpha else " ")
            else:
                row[m] = format(value, floatfmt) + (" " if baseline is not None else "")
        row["queries"] = res.num_queries
        rows.append(row)
    table = format_table(rows, ["system", *measures, "queries"], floatfmt=floatfmt)
    if baseline is not None:
        table += f"\n* paired t-test against {baseline!r}, p < {alpha}"
    return table
