"""Hybrid retrieval: fuse the ranked lists of two indexes (e.g. BM25 + dense, or SPLADE + dense).

Two fusion rules, over each index's top-``depth`` list for a query:

* Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009)::

      rrf(d) = Σ_i 1 / (k + rank_i(d))        rank_i(d) = 1, 2, ... in list i; k = 60 by default

  A document missing from list ``i`` contributes 0 for that list.

* Convex combination of normalised scores (Bruch, Gai & Ingber, "An Analysis of Fusion Functions
  for Hybrid Retrieval", TOIS 2023)::

      convex(d) = Σ_i w_i · norm_i(s_i(d))        (HybridIndex: w_1 = weight, w_2 = 1 - weight)

  ``norm`` is per query and per list: ``minmax`` ``(s - min) / (max - min)`` (0 when all scores are
  equal), ``zscore`` ``(s - mean) / std`` (0 when std = 0), or ``none``. A document missing from
  list ``i`` gets that list's *minimum* normalised score (0 under minmax), as if it ranked last.

Final ranking: descending fused score; ties broken by document id, so results are deterministic.
The plain-run functions :func:`rrf` and :func:`convex` take ``{qid: {docid: score}}`` runs (as
saved by evaluation code), so the same fusion applies offline. Written by hand: each rule is a few
lines, and the library that has them (ranx) would add numba and its own run types to
distilir-index's dependencies.

On disk a hybrid index is a directory whose manifest (kind ``"hybrid"``) holds the fusion settings
and, under ``components``, its two sub-indexes (kind, sub-folder, corpus), each saved in its own
sub-folder ``first-gN/`` / ``second-gN/`` as a complete index directory with its own manifest.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir_index.base import ArtifactDir, BaseIndex, Hit, IndexError_, ManifestError, read_manifest

__all__ = ["FUSION_METHODS", "NORMALIZATIONS", "HybridIndex", "convex", "rrf"]

FUSION_METHODS = ("rrf", "convex")
NORMALIZATIONS = ("minmax", "zscore", "none")

Run = dict[str, dict[str, float]]
_COMPONENT_DIR = re.compile(r"^(first|second)-g\d+$")
_Ranked = Sequence[tuple[str, float]]  # one query's list, best first


# ---------------------------------------------------------------------------------------------------
# Fusion of ranked lists (one query)
# ---------------------------------------------------------------------------------------------------
def _check_rrf_k(k: Any) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise ValueError(f"the RRF constant k must be a finite number >= 0 (60 in Cormack et al.), got {k!r}")
    return float(k)


def _check_normalization(normalization: Any) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def _rrf_lists(lists: Sequence[_Ranked], k: float) -> dict[str, float]:
    fused: dict[str, float] = {}
    for ranked in lists:
        for rank, (doc, _) in enumerate(ranked, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return fused


def _normalize(ranked: _Ranked, normalization: str) -> dict[str, float]:
    scores = {doc: float(s) for doc, s in ranked}
    if normalization == "none" or not scores:
        return scores
    values = list(scores.values())
    if normalization == "minmax":
        lo, hi = min(values), max(values)
        span = hi - lo
        return {d: (s - lo) / span if span > 0 else 0.0 for d, s in scores.items()}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {d: (s - mean) / std if std > 0 else 0.0 for d, s in scores.items()}


def _convex_lists(lists: Sequence[_Ranked], weights: Sequence[float], normalization: str) -> dict[str, float]:
    normed = [_normalize(ranked, normalization) for ranked in lists]
    docs: dict[str, None] = {}
    for n in normed:
        docs.update(dict.fromkeys(n))
    fused = dict.fromkeys(docs, 0.0)
    for w, n in zip(weights, normed, strict=True):
        if not n:  # this list has nothing for the query: it adds nothing
            continue
        floor = min(n.values())
        for d in fused:
            fused[d] += w * n.get(d, floor)
    return fused


def _sorted(fused: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


# ---------------------------------------------------------------------------------------------------
# Fusion of plain runs
# ---------------------------------------------------------------------------------------------------
def _ranked_lists(
    runs: Sequence[Mapping[str, Mapping[str, float]]], depth: int | None
) -> dict[str, list[_Ranked]]:
    if isinstance(runs, Mapping):
        raise TypeError(
            "runs must be a list of runs ({qid: {docid: score}}), got a single run; wrap it in a list"
        )
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    qids: dict[str, None] = {}
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise TypeError(
                f"runs[{i}] must be a mapping {{qid: {{docid: score}}}}, got {type(run).__name__}"
            )
        qids.update(dict.fromkeys(run))
    out: dict[str, list[_Ranked]] = {}
    for q in qids:
        lists = []
        for run in runs:
            scores = [(str(d), float(s)) for d, s in (run.get(q) or {}).items()]
            ranked = sorted(scores, key=lambda item: -item[1])  # stable: ties keep the run's order
            lists.append(ranked[:depth] if depth is not None else ranked)
        out[q] = lists
    return out


def rrf(runs: Sequence[Mapping[str, Mapping[str, float]]], k: float = 60, *, depth: int | None = None) -> Run:
    """Reciprocal rank fusion of runs: ``score(q, d) = Σ_runs 1 / (k + rank(q, d))``.

    Args:
        runs: ``{qid: {docid: score}}`` runs; within a run, rank 1 is the highest score (tied
            scores keep the run's own order, so a run built from an index's hits keeps its ranks).
            A document absent from a run contributes 0 for it; a query absent from a run
            is fused from the other runs.
        k: the RRF constant (60, Cormack et al. 2009).
        depth: use only each run's top ``depth`` per query (None: all).

    Returns:
        the fused run, each query's documents in descending fused score.

    Example::

        rrf([{"q": {"a": 9.0, "b": 5.0, "c": 1.0}}, {"q": {"c": 0.9, "a": 0.1}}])
        # {"q": {"a": 1/61 + 1/62, "c": 1/63 + 1/61, "b": 1/62}}
    """
    k = _check_rrf_k(k)
    return {q: dict(_sorted(_rrf_lists(lists, k))) for q, lists in _ranked_lists(runs, depth).items()}


def convex(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    weights: Sequence[float],
    normalization: str = "minmax",
    *,
    depth: int | None = None,
) -> Run:
    """Convex (weighted-sum) fusion of normalised run scores: ``score(q, d) = Σ_i w_i · norm_i(s_i(q, d))``.

    Args:
        runs: ``{qid: {docid: score}}`` runs.
        weights: one weight >= 0 per run (e.g. ``[0.5, 0.5]``; they need not sum to 1).
        normalization: ``"minmax"``, ``"zscore"`` or ``"none"``, per query and run (module docstring).
            A document absent from a run gets that run's minimum normalised score for the query.
        depth: use only each run's top ``depth`` per query (None: all).
    """
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a list of numbers, one per run, got {weights!r}")
    if len(weights) != len(runs):
        raise ValueError(f"got {len(runs)} runs but {len(weights)} weights; pass one weight per run")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite numbers >= 0, got {list(weights)!r}")
    normalization = _check_normalization(normalization)
    ranked = _ranked_lists(runs, depth)
    return {q: dict(_sorted(_convex_lists(lists, weights, normalization))) for q, lists in ranked.items()}


# ---------------------------------------------------------------------------------------------------
# The hybrid index
# ---------------------------------------------------------------------------------------------------
class HybridIndex(BaseIndex):
    """Searches two indexes and fuses their top-``depth`` lists per query (RRF or convex).

    Args:
        first / second: any two indexes with ``search(queries, k, filters=, ids=) -> list[list[Hit]]``
            (BM25Index, DenseIndex, SparseIndex, another HybridIndex, ...).
        method: ``"rrf"`` (default) or ``"convex"``.
        rrf_k: the RRF constant (default 60).
        weight: convex weight of ``first``; ``second`` gets ``1 - weight`` (default 0.5).
        normalization: score normalisation for convex fusion: ``"minmax"`` (default), ``"zscore"``,
            ``"none"``.
        depth: hits fetched from each index per query (default 100; at least ``k`` is fetched).

    Writes go to both indexes: ``add(ids, texts, metadata=...)`` adds the same documents to each
    (add to a sub-index directly when they need different inputs, e.g. precomputed vectors).

    Example::

        hybrid = HybridIndex(BM25Index(), DenseIndex(DenseEncoder("all-MiniLM-L6-v2")), method="rrf")
        hybrid.add(ids, texts, metadata=metas)
        hybrid.search(["what lowers blood pressure?"], k=10, filters={"year": {"$gte": 2015}})
        hybrid.save("indexes/scifact-hybrid")          # first.gN/ and second.gN/ inside
    """

    kind = "hybrid"
    help = "two indexes fused by reciprocal rank or normalised scores"

    def __init__(
        self,
        first: Any,
        second: Any,
        *,
        method: str = "rrf",
        rrf_k: float = 60,
        weight: float = 0.5,
        normalization: str = "minmax",
        depth: int = 100,
    ) -> None:
        for name, index in (("first", first), ("second", second)):
            if not isinstance(index, BaseIndex):
                raise TypeError(
                    f"{name} must be an index with a search() method (BM25Index, DenseIndex, "
                    f"SparseIndex, ...), got {type(index).__name__}"
                )
        if method not in FUSION_METHODS:
            raise ValueError(f"method must be one of {FUSION_METHODS}, got {method!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight (of the first index, convex fusion) must be in [0, 1], got {weight!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth (hits fetched from each index) must be a positive int, got {depth!r}")
        self.first = first
        self.second = second
        self.method = method
        self.rrf_k = _check_rrf_k(rrf_k)
        self.weight = float(weight)
        self.normalization = _check_normalization(normalization)
        self.depth = depth

    # -- description -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Documents in the larger of the two indexes (they hold the same ones when built together)."""
        return max(len(self.first), len(self.second))

    def __repr__(self) -> str:
        return (
            f"HybridIndex({type(self.first).__name__}, {type(self.second).__name__}, method={self.method!r}, "
            f"depth={self.depth}, docs={len(self)})"
        )

    def get_config_dict(self) -> dict[str, Any]:
        """The fusion settings (the sub-indexes describe themselves)."""
        return {
            "method": self.method,
            "rrf_k": self.rrf_k,
            "weight": self.weight,
            "normalization": self.normalization,
            "depth": self.depth,
        }

    def describe(self) -> dict[str, Any]:
        """Fusion settings plus each sub-index's own description."""
        parts = {}
        for name, index in (("first", self.first), ("second", self.second)):
            parts[name] = index.describe()
        return {"kind": self.kind, "settings": self.get_config_dict(), "components": parts}

    # -- writes ------------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Add the same documents to both indexes (``kwargs`` go to both ``add`` calls)."""
        ids = list(ids) if not isinstance(ids, (str, bytes)) else ids
        self.first.add(ids, texts, metadata=metadata, **kwargs)
        self.second.add(ids, texts, metadata=metadata, **kwargs)

    def delete(self, ids: Iterable[str]) -> int:
        """Delete from both indexes; returns the larger of the two counts."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("ids must be a list of document ids, got a single string; wrap it in a list")
        ids = list(ids)
        return max(int(self.first.delete(ids)), int(self.second.delete(ids)))

    # -- search ------------------------------------------------------------------------------------
    def fuse(self, first_hits: Sequence[Hit], second_hits: Sequence[Hit], k: int) -> list[Hit]:
        """Fuse one query's two hit lists (each best first) into the top ``k`` hits."""
        lists = [[(h.id, h.score) for h in first_hits], [(h.id, h.score) for h in second_hits]]
        if self.method == "rrf":
            fused = _rrf_lists(lists, self.rrf_k)
        else:
            fused = _convex_lists(lists, (self.weight, 1.0 - self.weight), self.normalization)
        carriers: dict[str, Hit] = {}
        for h in (*second_hits, *first_hits):  # first's hit wins when both carry text/metadata
            if h.id not in carriers or h.text is not None or h.metadata:
                carriers[h.id] = h
        out = []
        for doc, score in _sorted(fused)[:k]:
            h = carriers[doc]
            out.append(Hit(id=doc, score=float(score), text=h.text, metadata=h.metadata))
        return out

    def search(
        self,
        queries: Sequence[Any],
        k: int = 10,
        *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` fused hits per query; ``filters`` and ``ids`` are passed to both indexes, so
        fusion only sees documents that pass."""
        k = self.check_k(k)
        if isinstance(queries, (str, bytes)):
            raise TypeError("queries must be a list, got a single string; wrap it in a list")
        if not hasattr(queries, "__len__"):
            queries = list(queries)  # a generator; arrays (dense query vectors) pass through unchanged
        if ids is not None:
            ids = list(ids)
        depth = max(self.depth, k)
        a = self.first.search(queries, k=depth, filters=filters, ids=ids)
        b = self.second.search(queries, k=depth, filters=filters, ids=ids)
        if len(a) != len(queries) or len(b) != len(queries):
            raise IndexError_(
                f"a sub-index returned {len(a)} and {len(b)} result lists for {len(queries)} queries"
            )
        return [self.fuse(x, y, k) for x, y in zip(a, b, strict=True)]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save both indexes into sub-folders ``first-gN/`` and ``second-gN/`` of ``path`` (each a
        complete index directory) and commit a ``hybrid`` manifest naming them.

        Atomic like every index: the new generation's sub-folders are written (each through its own
        atomic save, under a ``.partial`` name, then renamed) before ``manifest.json`` switches to
        them; the previous generation's sub-folders are removed only after that. The sub-folders are
        listed under ``components`` rather than ``files`` because ``read_manifest`` checks that every
        entry of ``files`` is a regular file."""
        path = Path(path)
        with ArtifactDir(path, kind=self.kind) as art:
            components = {}
            for role, index in (("first", self.first), ("second", self.second)):
                name = f"{role}-g{art.generation}"
                final, tmp = path / name, path / f"{name}.partial"
                for leftover in (tmp, final):  # from an interrupted save of this same generation
                    if leftover.exists():
                        shutil.rmtree(leftover)
                _save_into(index, tmp)
                os.replace(tmp, final)
                sub = read_manifest(final)
                components[role] = {"kind": sub.get("kind"), "path": name, "corpus": sub.get("corpus")}
            first_corpus = components["first"]["corpus"] or {}
            art.commit(
                settings=self.get_config_dict(),
                corpus={"count": len(self), "fingerprint": first_corpus.get("fingerprint")},
                encoder=None,
                extra={"components": components},
            )
        keep = {c["path"] for c in components.values()}
        for p in path.iterdir():
            if p.is_dir() and _COMPONENT_DIR.match(p.name) and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        first_kwargs: Mapping[str, Any] | None = None,
        second_kwargs: Mapping[str, Any] | None = None,
    ) -> HybridIndex:
        """Open a hybrid index written by :meth:`save`; each sub-index is opened by the class
        registered for its kind (``first_kwargs`` / ``second_kwargs`` go to their ``load``)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        components = manifest.get("components") or {}
        loaded = {}
        for role, kwargs in (("first", first_kwargs), ("second", second_kwargs)):
            name = (components.get(role) or {}).get("path")
            if not name or not (path / name / "manifest.json").is_file():
                raise ManifestError(
                    f"{path}: the {role} sub-index named by the manifest is missing; the index is damaged"
                )
            loaded[role] = _load_index(path / name, **dict(kwargs or {}))
        settings = manifest.get("settings") or {}
        return cls(
            loaded["first"],
            loaded["second"],
            method=settings.get("method", "rrf"),
            rrf_k=settings.get("rrf_k", 60),
            weight=settings.get("weight", 0.5),
            normalization=settings.get("normalization", "minmax"),
            depth=settings.get("depth", 100),
        )


def _save_into(index: BaseIndex, folder: Path) -> None:
    index.save(folder)


def _load_index(path: Path, **kwargs: Any) -> Any:
    """Open a sub-index by its manifest kind (the index registry)."""
    from distilir_index.loading import load_index

    return load_index(path, **kwargs)
