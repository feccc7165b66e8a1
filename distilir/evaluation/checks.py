"""Checks that keep an evaluation from reporting garbage as a result.

:func:`evaluate` scores whatever it is given (a library call must not guess); the CLI and the
benchmarks call these first, so that an empty query set, a run made on another collection, or a
recall cut-off deeper than the run are refused or said, instead of printed as a table of numbers.

    problems = check_run(run, qrels, doc_ids=set(ds.corpus()))   # raises RunMismatch when unusable
    kept, dropped = measures_within_depth(["nDCG@10", "R@100"], depth=10)   # (["nDCG@10"], ["R@100"])
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from distilir.evaluation.metrics import EvaluationError, resolve_measure

__all__ = ["RunMismatch", "check_run", "measures_within_depth", "run_depth"]

# A run with more than this share of its retrieved ids unknown to the corpus is from another collection.
_FOREIGN_SHARE = 0.5


class RunMismatch(EvaluationError):
    """A run that cannot be evaluated against these qrels (no shared query, another collection)."""


def run_depth(run: Mapping[str, Mapping[str, Any]]) -> int:
    """The longest list of the run (0 for an empty run)."""
    return max((len(docs) for docs in run.values()), default=0)


def measures_within_depth(measures: Iterable[str], depth: int) -> tuple[list[str], list[str]]:
    """Split ``measures`` into those whose cut-off the run can reach and those it cannot.

    A recall at 100 of a 10-deep run is its recall at 10 under another name; such measures are
    returned in the second list for the caller to drop and say so. Measures without a cut-off
    (MAP, nDCG) are kept.
    """
    kept, dropped = [], []
    for m in measures:
        cutoff = resolve_measure(m).params.get("cutoff")
        (dropped if cutoff is not None and depth > 0 and cutoff > depth else kept).append(m)
    return kept, dropped


def check_run(
    run: Mapping[str, Mapping[str, Any]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    doc_ids: Collection[str] | None = None,
    collection: str = "the collection",
) -> list[str]:
    """Refuse a run that cannot mean anything against ``qrels``; return warnings for odd ones.

    Raises :class:`RunMismatch` when the qrels judge no query, the run is empty, no run query is
    judged, or most retrieved documents are not in ``doc_ids`` (the run was made on another
    collection). Returns human-readable warnings otherwise (some judged queries without a list,
    a few unknown documents).
    """
    if not qrels:
        raise RunMismatch(
            f"no judged query to evaluate: the qrels of {collection} are empty for this split. Check the "
            "split name and the queries file (`distilir data validate`)."
        )
    if not run or not any(run.values()):
        raise RunMismatch(
            f"the run is empty ({len(run)} queries, no hits): nothing to evaluate. Was the queries file "
            "empty, or did retrieval fail? `distilir data validate` checks the dataset."
        )
    shared = [q for q in run if q in qrels]
    if not shared:
        raise RunMismatch(
            f"the run ({len(run)} queries) shares no query id with the qrels of {collection} "
            f"({len(qrels)} queries): run ids look like {list(run)[:3]}, qrels ids like {list(qrels)[:3]}. "
            "Was the run made for another collection or split?"
        )
    warnings = []
    if doc_ids is not None:
        retrieved = {d for q in shared for d in run[q]}
        foreign = sorted(d for d in retrieved if d not in doc_ids)
        if len(foreign) > _FOREIGN_SHARE * len(retrieved):
            raise RunMismatch(
                f"{len(foreign)} of the {len(retrieved)} documents the run retrieves are not in the corpus "
                f"of {collection} (e.g. {foreign[:3]}): the run was made on another collection. Evaluate it "
                "with the --dataset it was retrieved from."
            )
        if foreign:
            warnings.append(
                f"{len(foreign)} of the {len(retrieved)} retrieved documents are not in the corpus of "
                f"{collection} (e.g. {foreign[:3]}); they count as non-relevant."
            )
    unanswered = len(qrels) - len(shared)
    if unanswered:
        warnings.append(f"{unanswered} of {len(qrels)} judged queries have no list in the run; they score 0.")
    return warnings
