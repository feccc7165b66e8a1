"""Evaluation backed by ir_measures: one `evaluate(run, qrels)` call, paired significance tests, and
plain-text tables.

    from distilir.evaluation import evaluate
    res = evaluate(run, ds.qrels("test"))              # nDCG@10, RR@10, R@100, R@1000
    res = evaluate(run, qrels, relevance_level=2)      # TREC DL: binary measures count grade >= 2
"""

from distilir.evaluation.metrics import (
    DEFAULT_MEASURES,
    EvalResult,
    EvaluationError,
    EvaluationWarning,
    evaluate,
    resolve_measure,
)
from distilir.evaluation.report import compare_table, format_table
from distilir.evaluation.significance import paired_test

__all__ = [
    "DEFAULT_MEASURES",
    "EvalResult",
    "EvaluationError",
    "EvaluationWarning",
    "compare_table",
    "evaluate",
    "format_table",
    "paired_test",
    "resolve_measure",
]
