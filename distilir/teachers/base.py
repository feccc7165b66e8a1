"""The `Teacher` protocol: a teacher scores the documents of one query.

A teacher is anything with ``score(query, docs) -> list[float]`` (higher means more relevant) plus a
description of itself. The description (``get_config_dict``) and the weights' file hash make up the
teacher *fingerprint* that keys the teacher score store, so scores from two different teachers (or
the same model with another prompt, max length or dtype) can never be mixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from hashlib import sha256
from typing import Any, Protocol, runtime_checkable

__all__ = ["SCORE_TYPES", "BaseTeacher", "Teacher", "TeacherError", "teacher_fingerprint"]

#: What a teacher's numbers mean; recorded in the store manifest.
SCORE_TYPES = (
    "logit",            # raw log-odds of relevance (cross-encoders, LLM yes/no), not a probability
    "probability",      # in [0, 1]
    "log_likelihood",   # mean log P(query | passage) under an LLM, <= 0
    "listwise_logit",   # logit of a document's identifier as the first generated token of a listwise ranking
    "similarity",       # inner product / cosine of bi-encoder or SPLADE vectors
    "bm25",             # BM25 score
    "normalized",       # an ensemble's weighted sum of per-query normalised scores
)


class TeacherError(ValueError):
    """A teacher spec or input that cannot be used; the message says what to do."""


@runtime_checkable
class Teacher(Protocol):
    name: str
    score_type: str

    def score(self, query: str, docs: Sequence[str]) -> list[float]: ...

    def get_config_dict(self) -> dict[str, Any]: ...


class BaseTeacher:
    """Convenience base: batched scoring over many queries and the fingerprint.

    Subclasses implement ``score`` and ``get_config_dict``; they may override ``score_many`` to
    batch across queries (cross-encoders and LLMs do, for throughput).
    """

    name: str = "teacher"
    score_type: str = "logit"

    def score(self, query: str, docs: Sequence[str]) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        if len(queries) != len(docs):
            raise TeacherError(f"got {len(queries)} queries but {len(docs)} document lists; one list per query")
        return [self.score(q, d) for q, d in zip(queries, docs, strict=True)]

    def get_config_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        return teacher_fingerprint(self)


def teacher_fingerprint(teacher: Teacher) -> str:
    """sha256 of the teacher's canonical config (which includes its weights' file hash), 16 hex chars."""
    config = teacher.get_config_dict()
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return sha256(blob).hexdigest()[:16]
