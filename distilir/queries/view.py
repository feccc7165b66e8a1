"""A collection with extra query splits (synthetic queries, a dev split carved from train).

The view answers like its base dataset for everything (name, corpus, its own splits, fingerprints)
and adds splits of its own, so candidates, teachers, training and evaluation need no special case for
generated queries. An added split's ``queries(split)`` is every query given for it (judged or not:
synthetic queries have no qrels, or the pseudo-qrels of their source documents).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distilir.data.base import DatasetError
from distilir.types import Qrels, Query

__all__ = ["QueriesView"]


class QueriesView:
    """``base`` plus ``queries[split]`` (and ``qrels[split]``) for each added split."""

    def __init__(
        self, base: Any, queries: Mapping[str, Mapping[str, Query]], qrels: Mapping[str, Qrels]
    ) -> None:
        own = set(base.splits())
        clash = own & set(queries)
        if clash:
            raise DatasetError(
                f"{base.name} already has split(s) {sorted(clash)}; "
                "give the added queries another split name."
            )
        all_ids = set(base.queries(None))
        for split, qs in queries.items():
            dup = all_ids & set(qs)
            if dup:
                raise DatasetError(
                    f"{len(dup)} query ids of split {split!r} are already ids of {base.name} "
                    f"(e.g. {sorted(dup)[:3]}); ids must be unique across splits."
                )
        self._base = base
        self._queries = {s: dict(q) for s, q in queries.items()}
        self._qrels = {s: {q: dict(d) for q, d in (qrels.get(s) or {}).items()} for s in queries}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    @property
    def base(self) -> Any:
        return self._base

    def splits(self) -> list[str]:
        return [*self._base.splits(), *self._queries]

    def queries(self, split: str | None = None) -> dict[str, Query]:
        if split is None:
            out = dict(self._base.queries(None))
            for qs in self._queries.values():
                out.update(qs)
            return out
        if split in self._queries:
            return dict(self._queries[split])
        return self._base.queries(split)

    def qrels(self, split: str) -> Qrels:
        if split in self._queries:
            return {q: dict(d) for q, d in self._qrels[split].items()}
        return self._base.qrels(split)

    def __repr__(self) -> str:
        added = {s: len(q) for s, q in self._queries.items()}
        return f"QueriesView({self._base!r}, added={added})"
