"""Keep the synthetic queries the teacher agrees with (round-trip consistency, Promptagator / GPL).

A query written for document ``d`` is kept when

1. ``d`` is in the first stage's top ``first_stage_depth`` for it (the query can find its document),
2. ``d`` is the teacher's top-ranked candidate (the teacher agrees the query is about ``d``), and
3. the teacher's top score is not in the lowest ``drop_quantile`` of top scores over all queries
   that passed 1 and 2 (the least confident queries go).

Each condition can be switched off (``first_stage_depth=None``, ``require_teacher_top=False``,
``drop_quantile=0``). The statistics say how many queries each rule removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from distilir.data.trec import sorted_ranking
from distilir.queries.base import QueryGeneratorError

__all__ = ["filter_queries"]


def filter_queries(
    sources: Mapping[str, str],
    teacher_run: Mapping[str, Mapping[str, float]],
    first_stage_run: Mapping[str, Mapping[str, float]] | None = None,
    *,
    first_stage_depth: int | None = 20,
    require_teacher_top: bool = True,
    drop_quantile: float = 0.25,
) -> tuple[list[str], dict[str, Any]]:
    """The query ids to keep and how many each rule dropped.

    Args:
        sources: ``{qid: source doc id}`` (``QueryStore.source_documents()``).
        teacher_run: ``{qid: {doc: teacher score}}`` over each query's candidates.
        first_stage_run: ``{qid: {doc: score}}`` of the first stage (needed for rule 1).
    """
    if not 0.0 <= drop_quantile < 1.0:
        raise QueryGeneratorError(f"drop_quantile must be in [0, 1), got {drop_quantile}")
    if first_stage_depth is not None and first_stage_run is None:
        raise QueryGeneratorError("first_stage_depth needs first_stage_run (or pass first_stage_depth=None)")
    stats = {"queries": len(sources), "no_teacher_scores": 0, "not_in_first_stage": 0, "not_teacher_top": 0}
    passed: list[tuple[str, float]] = []
    for qid, doc in sources.items():
        scores = teacher_run.get(qid)
        if not scores:
            stats["no_teacher_scores"] += 1
            continue
        if first_stage_depth is not None:
            ranked = sorted_ranking((first_stage_run or {}).get(qid, {}))
            if doc not in {d for d, _ in ranked[:first_stage_depth]}:
                stats["not_in_first_stage"] += 1
                continue
        top_doc, top_score = min(scores.items(), key=lambda x: (-x[1], x[0]))
        if require_teacher_top and top_doc != doc:
            stats["not_teacher_top"] += 1
            continue
        passed.append((qid, float(top_score)))
    threshold = (
        float(np.quantile([s for _, s in passed], drop_quantile)) if passed and drop_quantile else None
    )
    kept = [q for q, s in passed if threshold is None or s >= threshold]
    stats["low_teacher_score"] = len(passed) - len(kept)
    stats["kept"] = len(kept)
    stats["teacher_score_threshold"] = threshold
    return kept, stats
