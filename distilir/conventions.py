"""Evaluation conventions that belong to a collection, not to a system.

- ArguAna: queries are themselves corpus documents; BEIR drops a retrieved document whose id equals
  the query id (``ignore_identical_ids=True`` in BEIR's evaluator).
- TREC Deep Learning (2019/2020 passage and document): graded judgments 0-3; nDCG uses the grades as
  gains, binary measures (RR, R, MAP) count grade >= 2 as relevant.
- MS MARCO passage dev: MRR@10 is the official measure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["EvalConventions", "conventions_for"]


@dataclass(frozen=True)
class EvalConventions:
    ignore_identical_ids: bool = False
    relevance_level: int = 1
    measures: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100", "R@1000")

    def as_dict(self) -> dict:
        return asdict(self)


def conventions_for(name: str) -> EvalConventions:
    """The conventions for a dataset name or id (matched on well-known substrings)."""
    key = name.lower()
    if "arguana" in key:
        return EvalConventions(ignore_identical_ids=True)
    if "trec-dl" in key or "dl19" in key or "dl20" in key or "dl-2019" in key or "dl-2020" in key:
        return EvalConventions(relevance_level=2)
    if "msmarco-passage/dev" in key or key in {"msmarco-dev", "msmarco-passage-dev"}:
        return EvalConventions(measures=("RR@10", "nDCG@10", "R@100", "R@1000"))
    return EvalConventions()
