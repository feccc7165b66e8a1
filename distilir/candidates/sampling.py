"""Choosing which candidates a teacher scores: negative sampling from a first-stage run.

Kept apart from retrieval and from scoring, so the same run can be sampled in several ways and the
choice is recorded in the teacher store's manifest (``SamplingConfig.as_dict()``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from distilir.data.trec import sorted_ranking
from distilir.types import Qrels, Run

__all__ = ["SamplingConfig", "sample_candidates"]


@dataclass(frozen=True)
class SamplingConfig:
    """Args:
    window: ranks ``[start, end)`` (0-based) of the run from which negatives are drawn; hard
        negatives come from the top, e.g. ``(0, 100)``; ``(30, 100)`` skips likely false negatives.
    positives: "include" (judged positives first, then negatives), "exclude" (drop judged
        positives: teacher-only distillation), or "keep" (leave the list as retrieved).
    sample_size: negatives per query (None: every candidate in the window).
    seed: random seed for the draw; the same seed and run give the same lists.
    min_relevance: a qrels grade at or above which a document counts as positive.
    """

    window: tuple[int, int] = (0, 100)
    positives: str = "keep"
    sample_size: int | None = None
    seed: int = 13
    min_relevance: int = 1

    def __post_init__(self) -> None:
        start, end = self.window
        if not (0 <= start < end):
            raise ValueError(f"window must be (start, end) with 0 <= start < end, got {self.window}")
        if self.positives not in ("include", "exclude", "keep"):
            raise ValueError(f"positives must be 'include', 'exclude' or 'keep', got {self.positives!r}")
        if self.sample_size is not None and self.sample_size <= 0:
            raise ValueError(f"sample_size must be positive or None, got {self.sample_size}")

    def as_dict(self) -> dict:
        return asdict(self)


def sample_candidates(
    run: Run, config: SamplingConfig = SamplingConfig(), qrels: Qrels | None = None
) -> dict[str, list[str]]:
    """Per query, the list of doc ids to score: positives (if "include") then sampled negatives in
    rank order. Queries without positives are kept for "keep"/"exclude" and dropped for "include"."""
    if config.positives != "keep" and qrels is None:
        raise ValueError(f"positives={config.positives!r} needs qrels; pass qrels or use positives='keep'")
    out: dict[str, list[str]] = {}
    for qid in sorted(run):
        ranked = [d for d, _ in sorted_ranking(run[qid])]
        judged: Mapping[str, int] = (qrels or {}).get(qid, {})
        positives = [d for d, g in sorted(judged.items()) if g >= config.min_relevance]
        pool = ranked[config.window[0] : config.window[1]]
        if config.positives != "keep":
            pool = [d for d in pool if d not in set(positives)]
        if config.sample_size is not None and len(pool) > config.sample_size:
            rng = random.Random(f"{config.seed}:{qid}")
            keep = set(rng.sample(range(len(pool)), config.sample_size))
            pool = [d for i, d in enumerate(pool) if i in keep]
        if config.positives == "include":
            if not positives:
                continue
            pool = positives + pool
        out[qid] = pool
    return out
