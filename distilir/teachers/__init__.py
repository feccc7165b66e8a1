"""Teachers score query-document lists; the store keeps their scores on disk, resumable.

``build_teacher(spec)`` builds any teacher from a one-line spec (see :mod:`distilir.teachers.factory`);
``TeacherStore.open(path, teacher).score(teacher, queries, docs, candidates)`` scores candidate lists
into a kill-safe Parquet store (see :mod:`distilir.teachers.store`). Model libraries are imported only
when a teacher is built. The LLM teachers (``LLMPointwiseTeacher``, ``LLMListwiseTeacher``,
``OpenAIBackend``) are imported on first access.
"""

from __future__ import annotations

from typing import Any

from distilir.teachers.base import (
    SCORE_TYPES,
    BaseTeacher,
    Teacher,
    TeacherError,
    teacher_fingerprint,
    text_hash,
)
from distilir.teachers.bi_encoder import BiEncoderTeacher
from distilir.teachers.bm25 import BM25Stats, BM25Teacher
from distilir.teachers.cross_encoder import CrossEncoderTeacher
from distilir.teachers.ensemble import NORMALIZATIONS, EnsembleTeacher, normalize_scores
from distilir.teachers.factory import (
    DEFAULT_OFFLINE_TEACHER,
    TEACHERS,
    build_teacher,
    parse_teacher_spec,
)
from distilir.teachers.sparse import SparseTeacher
from distilir.teachers.store import StoreError, TeacherStore
from distilir.teachers.teach import rank_candidates, teach

__all__ = [
    "DEFAULT_OFFLINE_TEACHER",
    "NORMALIZATIONS",
    "SCORE_TYPES",
    "TEACHERS",
    "BM25Stats",
    "BM25Teacher",
    "BaseTeacher",
    "BiEncoderTeacher",
    "CrossEncoderTeacher",
    "EnsembleTeacher",
    "LLMListwiseTeacher",
    "LLMPointwiseTeacher",
    "OpenAIBackend",
    "SparseTeacher",
    "StoreError",
    "Teacher",
    "TeacherError",
    "TeacherStore",
    "build_teacher",
    "normalize_scores",
    "parse_teacher_spec",
    "rank_candidates",
    "teach",
    "teacher_fingerprint",
    "text_hash",
]

_LAZY = {
    "LLMPointwiseTeacher": "distilir.teachers.llm_pointwise",
    "LLMListwiseTeacher": "distilir.teachers.llm_listwise",
    "OpenAIBackend": "distilir.teachers.openai_backend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distilir.teachers' has no attribute {name!r}")
