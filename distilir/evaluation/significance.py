"""Paired significance test between two systems evaluated on the same queries.

The paired Student t-test on per-query differences ``d_q = a_q - b_q`` (the test trec_eval users and
pyserini/ranx reports use by default; Smucker, Allan & Carterette, CIKM 2007, found it agrees with
randomisation and bootstrap tests on TREC data)::

    t = mean(d) / (std(d, ddof=1) / sqrt(n)),   p = 2 * P(T_{n-1} > |t|)

computed by ``scipy.stats.ttest_rel`` (two-sided). ir_measures has no significance tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from distilir.evaluation.metrics import EvalResult, EvaluationError

__all__ = ["paired_test"]

PerQuery = Mapping[str, Mapping[str, float]]
_TOL = 1e-12


def _per_query(x: EvalResult | PerQuery, label: str) -> PerQuery:
    if isinstance(x, EvalResult):
        return x.per_query
    if isinstance(x, Mapping):
        return x
    raise EvaluationError(
        f"{label} must be an EvalResult or {{qid: {{measure: value}}}}, got {type(x).__name__}."
    )


def paired_test(
    per_query_a: EvalResult | PerQuery, per_query_b: EvalResult | PerQuery, measure: str
) -> tuple[float, float]:
    """Two-sided paired t-test of system A against system B on one measure.

    Args:
        per_query_a, per_query_b: ``EvalResult.per_query`` of each system (or the results themselves),
            over the same query ids.
        measure: the measure string both were evaluated with, e.g. ``"nDCG@10"``.

    Returns:
        ``(mean of a - b, p-value)``. When every difference is identical (within 1e-12) the t
        statistic is undefined; p is then 1.0 if the differences are all 0, else 0.0 (a constant
        non-zero shift).
    """
    a, b = _per_query(per_query_a, "per_query_a"), _per_query(per_query_b, "per_query_b")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b))[:3], sorted(set(b) - set(a))[:3]
        raise EvaluationError(
            f"the two systems were evaluated on different queries ({len(a)} vs {len(b)}; "
            f"only in A: {only_a}, only in B: {only_b}). Evaluate both against the same qrels."
        )
    qids = sorted(a)
    if len(qids) < 2:
        raise EvaluationError(f"a paired test needs at least 2 queries, got {len(qids)}.")
    try:
        xs = [float(a[q][measure]) for q in qids]
        ys = [float(b[q][measure]) for q in qids]
    except KeyError:
        have = sorted(next(iter(a.values())).keys())
        raise EvaluationError(
            f"measure {measure!r} is not in the per-query results; they hold {have}."
        ) from None
    diffs = [x - y for x, y in zip(xs, ys, strict=True)]
    mean_diff = sum(diffs) / len(diffs)
    # Constant differences (up to float rounding, e.g. 0.6 - 0.5 vs 0.2 - 0.1) leave t undefined.
    if max(diffs) - min(diffs) <= _TOL * max(1.0, max(abs(d) for d in diffs)):
        return mean_diff, 1.0 if abs(mean_diff) <= _TOL else 0.0
    stats = _scipy_stats()
    result: Any = stats.ttest_rel(xs, ys)
    p = float(result.pvalue)
    return mean_diff, p if math.isfinite(p) else 1.0


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - scipy is installed with the `bench` extra
        raise ImportError("paired_test needs scipy: pip install 'scipy>=1.11' (or distilir[bench])") from exc
    return stats
