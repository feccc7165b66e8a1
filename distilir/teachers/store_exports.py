"""The exports of a teacher score store: training lists, sentence-transformers and FlagEmbedding
datasets, TREC runs. A mixin of :class:`distilir.teachers.store.TeacherStore` (it reads the store's
loaded scores, ranks and text hashes)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir.io import write_atomic
from distilir.teachers.base import text_hash
from distilir.teachers.store_format import StoreError, text_of
from distilir.types import Qrels

__all__ = ["StoreExports"]

logger = logging.getLogger("distilir.teachers.store")


class StoreExports:
    """Export methods of the store (see the module docstring)."""

    path: Path
    _scores: dict[str, dict[str, float]]
    _ranks: dict[str, dict[str, int]]
    _qhash: dict[str, str]
    _dhash: dict[str, str]

    def datasets(self) -> list[str]:
        """The datasets the store's candidates came from, as its manifest records them (sorted)."""
        return sorted({str(c["dataset"]) for c in self.manifest.get("candidates", []) if c.get("dataset")})

    def _scored_on(self) -> str:
        """Which collection the store was scored on (from its manifest), for a text mismatch."""
        names = self.datasets()
        if not names:
            return "the collection changed since it was scored: score it into a new store"
        return (
            f"this store was scored on {', '.join(names)}: train or export with that dataset (data.dataset "
            "in a training config), or, if its files changed, score them into a new store"
        )

    def iter_lists(
        self,
        queries: Mapping[str, Any],
        docs: Mapping[str, Any],
        candidates: Mapping[str, Sequence[str]] | None = None,
        *,
        missing: str = "error",
    ) -> Iterator[dict[str, Any]]:
        """Per query, its scored list: ``{"qid", "query", "doc_ids", "docs", "scores"}``.

        Lists follow ``candidates`` (their order, duplicates dropped); with ``candidates=None``, every
        stored query that is in ``queries``, its documents in stored candidate order. ``missing``:
        ``"error"`` (a candidate without a stored score raises) or ``"skip"`` (it is left out; lists
        left empty are not yielded). Texts are checked against the stored hashes."""
        if missing not in ("error", "skip"):
            raise StoreError(f"missing must be 'error' or 'skip', got {missing!r}")
        if candidates is None:
            candidates = {q: list(self.get(q)) for q in self._scores if q in queries}
        for qid, doc_ids in candidates.items():
            if qid not in queries:
                raise StoreError(
                    f"query {qid!r} of the candidates is not in queries; pass the queries that were scored"
                )
            stored = self._scores.get(qid, {})
            ids = [d for d in dict.fromkeys(doc_ids) if d in stored]
            if missing == "error" and len(ids) != len(set(doc_ids)):
                absent = [d for d in dict.fromkeys(doc_ids) if d not in stored]
                raise StoreError(
                    f"query {qid!r}: {len(absent)} candidate(s) have no stored score (e.g. {absent[:3]}); "
                    "run store.score(...) for them first, or pass missing='skip'."
                )
            if not ids:
                continue
            q_text = text_of(queries[qid], "query", qid)
            if text_hash(q_text) != self._qhash[qid]:
                raise StoreError(f"query {qid!r} has another text than the one scored; {self._scored_on()}")
            texts = []
            for d in ids:
                if d not in docs:
                    raise StoreError(
                        f"document {d!r} (query {qid!r}) is not in docs; pass the scored collection"
                    )
                t = text_of(docs[d], "document", d)
                if text_hash(t) != self._dhash[d]:
                    raise StoreError(
                        f"document {d!r} has another text than the one scored; {self._scored_on()}"
                    )
                texts.append(t)
            yield {
                "qid": qid,
                "query": q_text,
                "doc_ids": ids,
                "docs": texts,
                "scores": [stored[d] for d in ids],
            }

    def to_sentence_transformers(
        self,
        queries: Mapping[str, Any],
        docs: Mapping[str, Any],
        candidates: Mapping[str, Sequence[str]] | None = None,
        *,
        n_docs: int | None = None,
        qrels: Qrels | None = None,
    ) -> Any:
        """A ``datasets.Dataset`` for sentence-transformers' distillation losses.

        Columns ``query, positive, negative_1, ..., negative_{n-1}, scores``, where ``scores`` is the
        list of the teacher's scores in column order ``[T(q, positive), T(q, negative_1), ...]`` — the
        label layout ``MarginMSELoss`` (list form) and ``DistillKLDivLoss`` accept (a column named
        ``scores`` is a label column for sentence-transformers). The positive is the candidate with
        the highest qrels grade (ties: the higher teacher score) when ``qrels`` are given (queries
        with no judged-relevant candidate are dropped), else the teacher's top document; negatives
        are the other candidates in candidate order. ``n_docs`` (positive + negatives) defaults to
        the shortest list; lists shorter than ``n_docs`` are dropped (logged)."""
        from datasets import Dataset

        rows = list(self._positive_first(queries, docs, candidates, qrels))
        if not rows:
            raise StoreError("no query has a scored list to export (check candidates / qrels)")
        width = n_docs or min(len(r[1]) for r in rows)
        if width < 2:
            raise StoreError(f"n_docs must be >= 2 (a positive and a negative), got {width}")
        kept = [r for r in rows if len(r[1]) >= width]
        if len(kept) < len(rows):
            logger.warning(
                "to_sentence_transformers: %d list(s) shorter than n_docs=%d were dropped",
                len(rows) - len(kept),
                width,
            )
        data: dict[str, list[Any]] = {"query": [r[0] for r in kept], "positive": [r[1][0] for r in kept]}
        for j in range(1, width):
            data[f"negative_{j}"] = [r[1][j] for r in kept]
        data["scores"] = [list(r[2][:width]) for r in kept]
        return Dataset.from_dict(data)

    def _positive_first(
        self, queries: Mapping[str, Any], docs: Mapping[str, Any], candidates: Any, qrels: Qrels | None
    ) -> Iterator[tuple[str, list[str], list[float], list[str], int]]:
        """(query, texts, scores, doc_ids, n_pos) per list with the positive(s) first."""
        for item in self.iter_lists(queries, docs, candidates):
            ids, scores = item["doc_ids"], item["scores"]
            if qrels is not None:
                grades = qrels.get(item["qid"], {})
                rel = [j for j, d in enumerate(ids) if grades.get(d, 0) > 0]
                if not rel:
                    continue
                rel.sort(key=lambda j: (-grades[ids[j]], -scores[j]))
            else:
                rel = [int(np.argmax(scores))]
            order = rel + [j for j in range(len(ids)) if j not in set(rel)]
            yield (
                item["query"],
                [item["docs"][j] for j in order],
                [scores[j] for j in order],
                [ids[j] for j in order],
                len(rel),
            )

    def to_flag_embedding_jsonl(
        self,
        path: str | os.PathLike[str],
        queries: Mapping[str, Any],
        docs: Mapping[str, Any],
        candidates: Mapping[str, Sequence[str]] | None = None,
        *,
        qrels: Qrels | None = None,
        n_negatives: int | None = None,
    ) -> Path:
        """Write FlagEmbedding's fine-tuning JSONL with teacher scores, one line per query:
        ``{"query", "pos": [...], "neg": [...], "pos_scores": [...], "neg_scores": [...]}``.

        Positives: every judged-relevant candidate when ``qrels`` are given (queries without one are
        left out), else the teacher's top document. Negatives: the other candidates in candidate order
        (the first ``n_negatives`` if given). Written atomically."""
        path = Path(path)
        lines = []
        for query, texts, scores, _, n_pos in self._positive_first(queries, docs, candidates, qrels):
            neg_end = len(texts) if n_negatives is None else n_pos + n_negatives
            lines.append(
                json.dumps(
                    {
                        "query": query,
                        "pos": texts[:n_pos],
                        "neg": texts[n_pos:neg_end],
                        "pos_scores": scores[:n_pos],
                        "neg_scores": scores[n_pos:neg_end],
                    },
                    ensure_ascii=False,
                )
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(
            path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        )
        return path

    def to_trec_run(
        self,
        path: str | os.PathLike[str],
        *,
        tag: str = "distilir-teacher",
        k: int | None = None,
        qids: Iterable[str] | None = None,
    ) -> Path:
        """Write a TREC run file with :func:`distilir.data.trec.write_run` (queries in id order, ranks
        by ``sorted_ranking``, at most ``k`` per query), atomically."""
        from distilir.data.trec import write_run

        if not re.fullmatch(r"\S+", tag):
            raise StoreError(f"tag must be one word without spaces, got {tag!r}")
        chosen = list(qids) if qids is not None else list(self._scores)
        run = {q: self._scores[q] for q in chosen if self._scores.get(q)}
        return write_run(run, path, tag=tag, depth=k)
