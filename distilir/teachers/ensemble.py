"""Ensemble teacher: a weighted mean of its members' per-query normalised scores.

Members speak different units (BM25 scores, cosines, logits), so each member's scores for one query's
candidate list ``s_1..s_n`` are first normalised over that list, then combined::

    zscore:  z_i = (s_i - mean(s)) / std(s)         (population std; 0 for every doc if std == 0)
    minmax:  z_i = (s_i - min(s)) / (max(s) - min(s))  (0 for every doc if max == min)
    rank:    z_i = (n - r_i) / (n - 1)               (r_i: 1-based rank, ties get their mean rank;
                                                      best doc 1, worst 0, all tied 0.5; 0 when n == 1)

    ensemble_i = sum_m w_m * z_{m,i} / sum_m w_m

Score type ``"normalized"``. Normalising per query is the usual way to fuse rankers with different
scales (Fox & Shaw 1994 "Combination of multiple searches", CombSUM over normalised scores;
Bassani & Romelli 2022, ranx.fuse). The scores are meaningful *within* one query's list only, which
is what list-wise and margin distillation losses need.

:meth:`EnsembleTeacher.agreement` reports how much the members agree, over the queries scored so
far: mean Kendall tau-b and Spearman rho of each member's ranking against the ensemble's, and
pairwise between members (``scipy.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distilir.teachers.base import BaseTeacher, Teacher, TeacherError, check_lists

__all__ = ["NORMALIZATIONS", "EnsembleTeacher", "normalize_scores"]

NORMALIZATIONS = ("zscore", "minmax", "rank")


def normalize_scores(scores: Sequence[float], method: str = "zscore") -> np.ndarray:
    """Normalise one query's scores (see the module docstring for the formulas)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise TeacherError(f"expected one list of scores, got an array of shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise TeacherError("scores contain NaN or infinity; a member teacher returned non-finite scores")
    n = len(s)
    if n == 0:
        return s
    if method == "zscore":
        std = s.std()
        return (s - s.mean()) / std if std > 0 else np.zeros(n)
    if method == "minmax":
        span = s.max() - s.min()
        return (s - s.min()) / span if span > 0 else np.zeros(n)
    if method == "rank":
        from scipy.stats import rankdata

        if n == 1:
            return np.zeros(1)
        ranks = rankdata(-s, method="average")  # 1 = best
        return (n - ranks) / (n - 1)
    raise TeacherError(f"normalization must be one of {NORMALIZATIONS}, got {method!r}")


class EnsembleTeacher(BaseTeacher):
    """Weighted mean of per-query normalised member scores.

    Args:
        members: ``[(teacher, weight), ...]`` (a bare teacher means weight 1); weights > 0.
        normalization: ``"zscore"`` (default), ``"minmax"`` or ``"rank"``.
        track_agreement: keep each query's member scores for :meth:`agreement` (memory grows with the
            number of scored lists; turn off for very large runs).

    Example::

        EnsembleTeacher([(BiEncoderTeacher("all-mpnet-base-v2"), 1.0), (BM25Teacher(texts), 1.0)])
    """

    kind = "ensemble"
    help = "members joined by '+', each 'spec*weight'"
    example = "ensemble:bi-encoder:all-mpnet-base-v2*1+bm25*1"
    score_type = "normalized"

    @classmethod
    def from_spec(cls, target: Any, options: dict[str, Any], *, corpus: Any = None) -> EnsembleTeacher:
        """``options["members"]``: the built ``(teacher, weight)`` pairs (the factory builds members)."""
        return cls(options.pop("members"), **options)

    def __init__(
        self,
        members: Sequence[tuple[Teacher, float] | Teacher],
        normalization: str = "zscore",
        *,
        track_agreement: bool = True,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise TeacherError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        pairs: list[tuple[Teacher, float]] = []
        for i, m in enumerate(members or ()):
            teacher, weight = m if isinstance(m, tuple) else (m, 1.0)
            if not isinstance(teacher, Teacher):
                raise TeacherError(
                    f"ensemble member {i} is a {type(teacher).__name__}, not a teacher (needs name, "
                    "score_type, "
                    "score() and get_config_dict()); build members with distilir.teachers.build_teacher"
                )
            if not isinstance(weight, (int, float)) or not weight > 0:
                raise TeacherError(
                    f"ensemble member {i} ({teacher.name}) has weight {weight!r}; weights must be > 0"
                )
            pairs.append((teacher, float(weight)))
        if not pairs:
            raise TeacherError("an ensemble needs at least one member teacher, e.g. [(bm25_teacher, 1.0)]")
        self.members = pairs
        self.normalization = normalization
        self.track_agreement = track_agreement
        self.labels = _unique_labels([t.name for t, _ in pairs])
        self.name = (
            "ensemble("
            + "+".join(f"{lab}*{w:g}" for lab, (_, w) in zip(self.labels, pairs, strict=True))
            + ")"
        )
        self._history: list[np.ndarray] = []  # per query: array [n_members + 1, n_docs]

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        check_lists(queries, docs)
        per_member = []
        for (teacher, _), label in zip(self.members, self.labels, strict=True):
            scores = teacher.score_many(queries, docs)
            if len(scores) != len(docs) or any(len(s) != len(d) for s, d in zip(scores, docs, strict=True)):
                raise TeacherError(
                    f"member {label} returned score lists whose lengths do not match the documents"
                )
            per_member.append(scores)
        weights = np.array([w for _, w in self.members])
        out = []
        for qi, ds in enumerate(docs):
            raw = [np.asarray(per_member[m][qi], dtype=np.float64) for m in range(len(self.members))]
            norm = (
                np.stack([normalize_scores(r, self.normalization) for r in raw])
                if ds
                else np.zeros((len(raw), 0))
            )
            combined = weights @ norm / weights.sum()
            if self.track_agreement and len(ds) > 1:
                self._history.append(np.vstack([np.stack(raw), combined[None, :]]))
            out.append(combined.tolist())
        return out

    def agreement(self) -> dict[str, Any]:
        """Mean Kendall tau-b / Spearman rho over the queries scored so far (lists of >= 2 docs).

        Returns ``{"queries": n, "member_vs_ensemble": {label: {"kendall_tau", "spearman"}},
        "pairwise": {"a|b": {"kendall_tau", "spearman"}}}``. A correlation that is undefined for a
        query (a member gave all its docs the same score) is left out of that mean; a mean over no
        queries is ``None``."""
        from scipy.stats import kendalltau, spearmanr

        labels = [*self.labels, "ensemble"]
        k = len(self.labels)

        def mean_corr(a: int, b: int) -> dict[str, float | None]:
            taus, rhos = [], []
            for h in self._history:
                x, y = h[a], h[b]
                if np.ptp(x) == 0 or np.ptp(y) == 0:
                    continue
                taus.append(kendalltau(x, y).statistic)
                rhos.append(spearmanr(x, y).statistic)
            return {
                "kendall_tau": float(np.mean(taus)) if taus else None,
                "spearman": float(np.mean(rhos)) if rhos else None,
            }

        return {
            "queries": len(self._history),
            "member_vs_ensemble": {labels[i]: mean_corr(i, k) for i in range(k)},
            "pairwise": {
                f"{labels[i]}|{labels[j]}": mean_corr(i, j) for i in range(k) for j in range(i + 1, k)
            },
        }

    def reset_agreement(self) -> None:
        self._history.clear()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "kind": "ensemble",
            "normalization": self.normalization,
            "members": [
                {"label": lab, "weight": w, "config": t.get_config_dict()}
                for lab, (t, w) in zip(self.labels, self.members, strict=True)
            ],
            "score_type": self.score_type,
        }


def _unique_labels(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out
