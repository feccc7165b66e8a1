"""A new teacher kind in one module: query-term overlap under the BM25 index's analyser.

Real and tiny: the score of a document is the fraction of the query's (stemmed, stop-worded) terms it
contains, so it needs no model and no corpus statistics. Registered in the test with one line:
``TEACHERS.register("overlap", "tests.distilir.extensions.overlap_teacher:OverlapTeacher")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distilir_index.bm25 import analyze

from distilir.teachers.base import BaseTeacher, check_lists


class OverlapTeacher(BaseTeacher):
    kind = "overlap"
    help = "none: the fraction of the query's analysed terms each document contains"
    example = "overlap"
    default_target = "terms"
    score_type = "probability"
    name = "overlap"

    def __init__(self, target: str = "terms", *, stemmer: str | None = "porter") -> None:
        self.stemmer = stemmer

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        check_lists(queries, docs)
        out = []
        for q_terms, ds in zip(analyze(queries, stemmer=self.stemmer), docs, strict=True):
            wanted = set(q_terms)
            terms = analyze(ds, stemmer=self.stemmer)
            out.append([len(wanted & set(t)) / len(wanted) if wanted else 0.0 for t in terms])
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "stemmer": self.stemmer, "score_type": self.score_type}
