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

__all__ = [
    "SCORE_TYPES",
    "BaseTeacher",
    "Teacher",
    "TeacherError",
    "describe_model",
    "state_dict_fingerprint",
    "teacher_fingerprint",
    "text_hash",
]

#: What a teacher's numbers mean; recorded in the store manifest.
SCORE_TYPES = (
    "logit",  # raw log-odds of relevance (cross-encoders, LLM yes/no), not a probability
    "probability",  # in [0, 1]
    "log_likelihood",  # mean log P(query | passage) under an LLM, <= 0
    "listwise_logit",  # logit of a document's identifier as the first generated token of a listwise ranking
    "similarity",  # inner product / cosine of bi-encoder or SPLADE vectors
    "bm25",  # BM25 score
    "normalized",  # an ensemble's weighted sum of per-query normalised scores
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
            raise TeacherError(
                f"got {len(queries)} queries but {len(docs)} document lists; one list per query"
            )
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


# --- helpers shared by the teacher implementations (added with the non-LLM teachers) ---------------


def text_hash(text: str) -> str:
    """First 16 hex characters of sha256(UTF-8 text): the text part of score-store keys and the key of
    the embedding caches (64 bits: a collision among a few million texts has probability < 1e-6)."""
    return sha256(text.encode("utf-8")).hexdigest()[:16]


def state_dict_fingerprint(module: Any) -> str:
    """sha256 over a torch module's parameters and buffers (names, dtypes, shapes and bytes), for models
    that exist only in memory (e.g. a CrossEncoder with a freshly initialised head), where no file
    hash can describe the weights."""
    import torch

    h = sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode() + b"\x00")
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16; its bit pattern is exactly int16
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()


def describe_model(name: str | None, resolved: str | None, module: Any = None) -> dict[str, Any]:
    """Identity of a model's weights for configs and manifests.

    - a local folder: ``fingerprint`` = sha256 of its weight/config/tokenizer files
      (``distilir_index.models.fingerprint_folder``);
    - a hub id: ``revision`` = the commit hash transformers resolved, when it reports one
      (``config._commit_hash``), else ``None``;
    - a model object with no folder (``name`` is None): ``fingerprint`` = sha256 of its state dict.
    """
    from distilir_index.models import fingerprint_folder

    fingerprint = fingerprint_folder(resolved) if resolved else None
    revision = None
    if fingerprint is None and module is not None:
        config = getattr(module, "config", None)
        revision = getattr(config, "_commit_hash", None)
        if name is None or revision is None:
            fingerprint = state_dict_fingerprint(module)
    return {"name": name, "path": resolved, "fingerprint": fingerprint, "revision": revision}
