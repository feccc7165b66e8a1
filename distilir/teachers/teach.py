"""One call from candidate lists to a teacher score store: what the CLI, the demo and the benchmarks
call (``distilir teach`` is a thin wrapper).

    from distilir.teachers import teach
    store, stats = teach(ds, candidates, "ensemble?normalization=zscore:bm25+splade:splade-tiny", "store/")
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir.data.trec import sorted_ranking
from distilir.teachers.base import Teacher, TeacherError
from distilir.teachers.store_format import LOCK, MANIFEST

__all__ = ["rank_candidates", "teach"]


def rank_candidates(
    candidates: Mapping[str, Sequence[str] | Mapping[str, float]], depth: int | None = None
) -> dict[str, list[str]]:
    """Candidate lists as ranked id lists: a ``{doc: score}`` mapping is ordered by
    :func:`distilir.data.trec.sorted_ranking` (descending score, ties as trec_eval breaks them), a
    sequence is kept as it is; each cut to ``depth`` when given."""
    if depth is not None and depth < 1:
        raise TeacherError(f"depth must be >= 1, got {depth}")
    out = {}
    for qid, docs in candidates.items():
        ranked = [d for d, _ in sorted_ranking(docs)] if isinstance(docs, Mapping) else list(docs)
        out[qid] = ranked[:depth] if depth is not None else ranked
    return out


def teach(
    dataset: Any,
    candidates: Mapping[str, Sequence[str] | Mapping[str, float]],
    teacher: str | Mapping[str, Any] | Teacher,
    out: str | os.PathLike[str],
    *,
    depth: int | None = None,
    batch_queries: int = 16,
    candidate_source: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Score ``candidates`` (``{qid: ranked doc ids or {doc: score}}``) of ``dataset``'s queries with
    ``teacher`` (a spec, a dict spec or a teacher object) into the store at ``out`` (created or
    resumed: pairs already stored are not scored again).

    Returns:
        ``(store, stats)``: the closed :class:`TeacherStore` (re-open it to read) and the scoring
        statistics (``scored``, ``skipped``, ``fingerprint``, ...).
    """
    from distilir.teachers.factory import build_teacher
    from distilir.teachers.store import TeacherStore

    lists = rank_candidates(candidates, depth)
    if not lists or not any(lists.values()):
        raise TeacherError(
            f"no candidates to score ({len(lists)} queries, all empty); make candidate lists with "
            "`distilir candidates` first."
        )
    queries = dataset.queries(None)
    unknown = [q for q in lists if q not in queries]
    if unknown:
        raise TeacherError(
            f"{len(unknown)} candidate query ids are not queries of {dataset.name} (e.g. {unknown[:3]}); "
            "were the candidates made for another dataset?"
        )
    corpus = dataset.corpus()
    missing = sorted({d for docs in lists.values() for d in docs if d not in corpus})
    if missing:
        raise TeacherError(
            f"{len(missing)} candidate document ids are not in {dataset.name}'s corpus (e.g. {missing[:3]}); "
            "were the candidates made for another dataset?"
        )
    if not isinstance(teacher, Teacher):
        teacher = build_teacher(teacher, corpus={d.id: d.full_text for d in corpus.values()})
    source = {"dataset": dataset.name, "queries": len(lists), "depth": depth, **dict(candidate_source or {})}
    created = not (Path(out) / MANIFEST).exists()
    try:
        with TeacherStore.open(out, teacher, candidate_source=source) as store:
            stats = store.score(
                teacher,
                {q: queries[q] for q in lists},
                {d: doc.full_text for d, doc in corpus.items()},
                lists,
                batch_queries=batch_queries,
                progress=progress,
            )
            stats = {**stats, "fingerprint": store.fingerprint, "teacher": teacher.name, "store": str(out)}
    except BaseException:
        if created:
            _remove_if_empty(Path(out))
        raise
    return store, stats


def _remove_if_empty(path: Path) -> None:
    """Remove a store this call created when it holds no committed score (a teacher that failed or was
    interrupted before its first batch), so no empty store bound to that teacher is left behind. Only
    the store's own files are removed, and only when nothing else is in the folder."""
    from distilir.teachers.store_format import PARTIAL

    if not path.is_dir():
        return
    names = {p.name for p in path.iterdir()}
    if not all(n in (MANIFEST, LOCK) or PARTIAL.match(n) for n in names):
        return  # a committed shard, or files that are not the store's: keep everything
    try:
        if json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("counts", {}).get("pairs", 0):
            return
    except (OSError, json.JSONDecodeError):
        pass
    for name in names:
        (path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()
