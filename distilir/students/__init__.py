"""Students: the fast models trained on teacher scores.

Every student maps a batch of queries and candidate lists to ``[B, N]`` scores with gradients
(``score`` / ``forward_scores``), which :mod:`distilir.losses` consume; see
:mod:`distilir.students.base` for the protocol and the saved format.

* :class:`BiEncoderStudent` — dense, over a sentence-transformers ``SentenceTransformer``
* :class:`SpladeStudent` — learned sparse, over a ``SparseEncoder``, with the FLOPS regulariser
* :class:`CrossEncoderStudent` — pairwise scorer, over a ``CrossEncoder`` with one logit

Model names: everything ``distilir_index.models.resolve_model`` resolves (the one resolver of every
command; ``paraphrase-MiniLM-L3-v2`` is rebuilt from its packaged ONNX file by
``distilir_index.minilm_l3.build_minilm_l3``).
"""

from __future__ import annotations

import os
from typing import Any

from distilir_index.registry import Registry

from distilir.students.base import (
    BaseStudent,
    EncoderStudent,
    Student,
    StudentError,
    StudentOutput,
    read_student_manifest,
)
from distilir.students.bi_encoder import BiEncoderStudent
from distilir.students.cross_encoder import CrossEncoderStudent
from distilir.students.flops import FlopsSchedule, flops, quadratic_warmup
from distilir.students.splade import SpladeStudent

__all__ = [
    "STUDENTS",
    "BaseStudent",
    "BiEncoderStudent",
    "CrossEncoderStudent",
    "EncoderStudent",
    "FlopsSchedule",
    "SpladeStudent",
    "Student",
    "StudentError",
    "StudentOutput",
    "build_student",
    "flops",
    "load_student",
    "quadratic_warmup",
]

#: Student classes by the ``kind`` a config names (``bi-encoder``, ``splade``, ``cross-encoder``; case
#: and ``-`` / ``_`` do not matter, so manifests that say ``bi_encoder`` still load).
STUDENTS = Registry(
    "student",
    {cls.kind: cls for cls in (BiEncoderStudent, SpladeStudent, CrossEncoderStudent)},
    error=StudentError,
)


def build_student(kind: str, **kwargs: Any) -> BaseStudent:
    """Build a student from its ``kind`` (``bi-encoder``, ``splade``, ``cross-encoder``) and arguments."""
    cls = STUDENTS.get(kind)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise StudentError(
            f"cannot build a {cls.kind!r} student with arguments {sorted(kwargs)}: {exc}"
        ) from exc


def load_student(path: str | os.PathLike[str], **overrides: Any) -> BaseStudent:
    """Load a student saved by ``student.save(path)``, whatever its kind."""
    manifest = read_student_manifest(path)
    kind = manifest.get("kind")
    if not isinstance(kind, str) or kind not in STUDENTS:
        raise StudentError(
            f"{path}: unknown student kind {kind!r} in manifest.json; valid kinds are {STUDENTS.kinds()}"
        )
    return STUDENTS.get(kind).load(path, **overrides)
