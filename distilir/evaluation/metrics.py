"""Evaluate a run against qrels with ``ir_measures`` (MacAvaney et al., ECIR 2022), which dispatches
each measure to a reference implementation (pytrec_eval / trec_eval for nDCG, R, P, AP; the MS MARCO
script for RR@k). No metric is re-implemented here.

Conventions (the ones BEIR, pyserini and ``trec_eval -c`` use):

- **Judged queries define the denominator.** A query in the qrels for which the run retrieved
  nothing scores 0 on every measure and is averaged in. Queries in the run without qrels are ignored.
  (pytrec_eval alone averages only over queries present in the run; we fill the rest with each
  measure's empty-ranking value, ``Measure.DEFAULT`` = 0, before averaging.)
- **Grades.** nDCG uses the grade itself as the gain, ``nDCG@k = DCG@k / IDCG@k`` with
  ``DCG@k = sum_{i<=k} grade_i / log2(i + 1)`` (trec_eval's ``ndcg_cut``; Järvelin & Kekäläinen,
  TOIS 2002). Binary measures (RR, R, P, AP/MAP, Success, ...) count a document as relevant when
  ``grade >= relevance_level``. TREC Deep Learning uses ``relevance_level=2`` (Craswell et al., 2019):
  ``evaluate(run, qrels, relevance_level=2)`` turns ``"RR@10"`` into ``RR(rel=2)@10``. A measure string
  that sets ``rel`` itself keeps it.
- **Self-hits.** ``ignore_identical_ids=True`` drops run entries whose doc id equals the query id
  before evaluation (BEIR does this for ArguAna and Quora, where queries are corpus documents), so
  the documents below move up.
- **Ties** are ordered as trec_eval orders them (descending score, then descending doc id).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ir_measures

from distilir.types import Qrels, Run

__all__ = [
    "DEFAULT_MEASURES",
    "EvalResult",
    "EvaluationError",
    "EvaluationWarning",
    "evaluate",
    "resolve_measure",
]

#: What ``evaluate`` computes unless told otherwise (ir_measures syntax).
DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "R@1000")

_EXAMPLES = "'nDCG@10', 'RR@10', 'R@100', 'P@5', 'AP', 'RR(rel=2)@10', 'Success@10'"


class EvaluationError(ValueError):
    """Invalid input to evaluation: a bad measure name, a malformed run or qrels."""


class EvaluationWarning(UserWarning):
    """Evaluation ran, but something suggests a mistake (e.g. run and qrels share no query id)."""


@dataclass(frozen=True)
class EvalResult:
    """Scores of one run.

    Attributes:
        measures: the measure strings as given; they key ``aggregate`` and ``per_query``.
        aggregate: ``{measure: mean over all judged queries}``.
        per_query: ``{qid: {measure: value}}`` for every judged query (missing ones at 0).
        num_queries: number of judged queries (the denominator).
        missing_queries: judged queries for which the run has no document (scored 0).
        settings: ``relevance_level``, ``ignore_identical_ids`` and the resolved ir_measures names.
    """

    measures: tuple[str, ...]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    num_queries: int
    missing_queries: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, measure: str) -> float:
        if measure not in self.aggregate:
            raise KeyError(f"{measure!r} was not computed; computed: {list(self.measures)}")
        return self.aggregate[measure]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (aggregate, per-query values, counts, settings)."""
        return {
            "measures": list(self.measures),
            "aggregate": dict(self.aggregate),
            "num_queries": self.num_queries,
            "missing_queries": list(self.missing_queries),
            "settings": dict(self.settings),
            "per_query": {qid: dict(values) for qid, values in self.per_query.items()},
        }


def resolve_measure(measure: str | ir_measures.Measure, relevance_level: int = 1) -> ir_measures.Measure:
    """Parse an ir_measures string (or take a Measure) and apply ``relevance_level`` to binary measures.

    ``rel`` is set only on measures that have that parameter and do not set it themselves; nDCG has
    none (its gains are the grades).
    """
    if isinstance(measure, ir_measures.Measure):
        parsed = measure
    elif isinstance(measure, str):
        try:
            parsed = ir_measures.parse_measure(measure.strip())
        except (ValueError, NameError, SyntaxError) as exc:
            raise EvaluationError(
                f"cannot parse measure {measure!r} ({exc}); use ir_measures syntax such as {_EXAMPLES}."
            ) from None
    else:
        raise EvaluationError(f"a measure must be a string like 'nDCG@10', got {type(measure).__name__}.")
    if relevance_level != 1 and "rel" in parsed.SUPPORTED_PARAMS and "rel" not in parsed.params:
        parsed = parsed(rel=relevance_level)
    try:
        parsed.validate_params()
    except AssertionError as exc:  # ir_measures validates with assert; turn it into a real error
        raise EvaluationError(f"invalid measure {measure!r}: {exc}. Examples: {_EXAMPLES}.") from None
    if not ir_measures.DefaultPipeline.supports(parsed):
        raise EvaluationError(
            f"no installed ir_measures provider computes {parsed!r}; pick another measure ({_EXAMPLES}) "
            "or install the provider ir_measures names for it."
        )
    return parsed


def _clean_run(run: Any, ignore_identical_ids: bool) -> tuple[Run, int]:
    if not isinstance(run, Mapping):
        raise EvaluationError(f"run must be a dict {{qid: {{docid: score}}}}, got {type(run).__name__}.")
    clean: Run = {}
    dropped = 0
    for qid, docs in run.items():
        if not isinstance(qid, str) or not isinstance(docs, Mapping):
            raise EvaluationError(
                f"run must map string query ids to {{docid: score}} dicts; got {type(qid).__name__} {qid!r} "
                f"-> {type(docs).__name__}. Convert ids with str()."
            )
        entries: dict[str, float] = {}
        for docid, score in docs.items():
            if not isinstance(docid, str):
                raise EvaluationError(
                    f"run[{qid!r}] has a non-string doc id {docid!r}; convert ids with str()."
                )
            try:
                value = float(score)
            except (TypeError, ValueError):
                raise EvaluationError(f"run[{qid!r}][{docid!r}] = {score!r} is not a number.") from None
            if not math.isfinite(value):
                raise EvaluationError(
                    f"run[{qid!r}][{docid!r}] = {score!r} is not finite; NaN/inf scores cannot be ranked."
                )
            if ignore_identical_ids and docid == qid:
                dropped += 1
                continue
            entries[docid] = value
        if entries:
            clean[qid] = entries
    return clean, dropped


def _clean_qrels(qrels: Any) -> Qrels:
    if not isinstance(qrels, Mapping) or not qrels:
        raise EvaluationError(
            f"qrels must be a non-empty dict {{qid: {{docid: grade}}}}, got {type(qrels).__name__} "
            f"of length {len(qrels) if isinstance(qrels, Mapping) else 'n/a'}."
        )
    clean: Qrels = {}
    for qid, docs in qrels.items():
        if not isinstance(qid, str) or not isinstance(docs, Mapping):
            raise EvaluationError(
                f"qrels must map string query ids to {{docid: grade}} dicts; "
                f"got {type(qid).__name__} {qid!r}."
            )
        entries: dict[str, int] = {}
        for docid, grade in docs.items():
            if isinstance(grade, bool) or not isinstance(docid, str):
                raise EvaluationError(
                    f"qrels[{qid!r}][{docid!r}] = {grade!r}: expected a string doc id and int grade."
                )
            try:
                as_int = int(grade)
            except (TypeError, ValueError):
                raise EvaluationError(
                    f"qrels[{qid!r}][{docid!r}] = {grade!r} is not an integer grade."
                ) from None
            if as_int != grade:
                raise EvaluationError(f"qrels[{qid!r}][{docid!r}] = {grade!r} is not an integer grade.")
            entries[docid] = as_int
        clean[qid] = entries
    return clean


def evaluate(
    run: Run,
    qrels: Qrels,
    measures: Iterable[str] | str | None = None,
    ignore_identical_ids: bool | None = None,
    relevance_level: int | None = None,
    *,
    conventions: Any = None,
) -> EvalResult:
    """Score ``run`` against ``qrels`` with ir_measures; see the module docstring for the conventions.

    Args:
        run: ``{qid: {docid: score}}``, higher is better.
        qrels: ``{qid: {docid: grade}}``; its query ids are the queries evaluated.
        measures: ir_measures strings (``"nDCG@10"``, ``"RR@10"``, ``"R@100"``, ``"RR(rel=2)@10"``, ...).
        ignore_identical_ids: drop run entries with ``docid == qid`` first (BEIR's ArguAna/Quora rule).
        relevance_level: minimum grade a binary measure counts as relevant (2 for TREC DL).

        conventions: a collection's conventions — an
            :class:`distilir.conventions.EvalConventions` or a dataset name / id (looked up with
            :func:`distilir.conventions.conventions_for`) — giving the defaults of ``measures``,
            ``ignore_identical_ids`` and ``relevance_level``; an argument given explicitly wins.

    Returns:
        An :class:`EvalResult` keyed by the measure strings as given.

    Example:
        >>> evaluate({"q1": {"d1": 2.0, "d2": 1.0}}, {"q1": {"d2": 1}}, ["RR@10"]).aggregate
        {'RR@10': 0.5}
    """
    if conventions is not None:
        from distilir.conventions import EvalConventions, conventions_for

        conv = conventions if isinstance(conventions, EvalConventions) else conventions_for(str(conventions))
        measures = conv.measures if measures is None else measures
        ignore_identical_ids = (
            conv.ignore_identical_ids if ignore_identical_ids is None else ignore_identical_ids
        )
        relevance_level = conv.relevance_level if relevance_level is None else relevance_level
    measures = DEFAULT_MEASURES if measures is None else measures
    ignore_identical_ids = bool(ignore_identical_ids)
    relevance_level = 1 if relevance_level is None else relevance_level
    measure_list = [measures] if isinstance(measures, str) else list(measures)
    given = tuple(str(m) for m in measure_list)
    if not given:
        raise EvaluationError(f"measures is empty; give at least one, e.g. {DEFAULT_MEASURES}.")
    if isinstance(relevance_level, bool) or not isinstance(relevance_level, int) or relevance_level < 1:
        raise EvaluationError(f"relevance_level must be an integer >= 1, got {relevance_level!r}.")
    resolved = {
        name: resolve_measure(m, relevance_level) for name, m in zip(given, measure_list, strict=True)
    }
    clean_qrels = _clean_qrels(qrels)
    clean_run, dropped = _clean_run(run, ignore_identical_ids)

    judged = list(clean_qrels)
    if clean_run and not any(qid in clean_qrels for qid in clean_run):
        warnings.warn(
            f"the run ({len(clean_run)} queries) shares no query id with the qrels ({len(judged)} queries): "
            f"every query scores 0. Run ids look like {list(clean_run)[:3]}, qrels ids like {judged[:3]}.",
            EvaluationWarning,
            stacklevel=2,
        )

    unique = list(dict.fromkeys(resolved.values()))
    values: dict[ir_measures.Measure, dict[str, float]] = {m: {} for m in unique}
    run_judged = {qid: docs for qid, docs in clean_run.items() if qid in clean_qrels}
    if run_judged:
        for metric in ir_measures.iter_calc(unique, clean_qrels, run_judged):
            if metric.query_id in clean_qrels:
                values[metric.measure][metric.query_id] = float(metric.value)

    per_query: dict[str, dict[str, float]] = {qid: {} for qid in judged}
    aggregate: dict[str, float] = {}
    for name, measure in resolved.items():
        agg = measure.aggregator()
        for qid in judged:
            value = values[measure].get(qid, float(measure.DEFAULT))
            per_query[qid][name] = value
            agg.add(value)
        aggregate[name] = float(agg.result())

    missing = tuple(qid for qid in judged if qid not in run_judged)
    settings = {
        "relevance_level": relevance_level,
        "ignore_identical_ids": ignore_identical_ids,
        "identical_ids_dropped": dropped,
        "resolved_measures": {name: repr(m) for name, m in resolved.items()},
        "ir_measures_version": ir_measures.__version__,
    }
    return EvalResult(given, aggregate, per_query, len(judged), missing, settings)
