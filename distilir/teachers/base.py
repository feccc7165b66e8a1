"""The `Teacher` protocol: a teacher scores the documents of queries.

A teacher scores whole queries, ``score_many(queries, docs_lists) -> list[list[float]]`` (higher means
more relevant; ``score(query, docs)`` is one query of it), and describes itself. The description
(``get_config_dict``) and the weights' file hash make up the teacher *fingerprint* that keys the
teacher score store, so scores from two different teachers (or the same model with another prompt,
max length or dtype) can never be mixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from hashlib import sha256
from typing import Any, ClassVar, Protocol, runtime_checkable

from distilir_index.embedding_cache import text_hash

__all__ = [
    "SCORE_TYPES",
    "BaseTeacher",
    "Teacher",
    "TeacherError",
    "check_lists",
    "describe_model",
    "load_teacher_model",
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
    """What the store, the ensemble and the Ray driver call: ``score_many`` over whole queries (the
    primary method: teachers batch across queries), ``score`` for one query, and the description
    that makes the fingerprint."""

    name: str
    score_type: str

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]: ...

    def score(self, query: str, docs: Sequence[str]) -> list[float]: ...

    def get_config_dict(self) -> dict[str, Any]: ...


class BaseTeacher:
    """What every teacher class shares: its registry identity, ``score`` built on ``score_many``,
    the spec constructor and the fingerprint.

    Subclasses set ``kind`` (the name in :data:`distilir.teachers.TEACHERS` and in specs), ``help``
    (what a spec's TARGET is), ``example`` (a spec), and implement ``score_many`` and
    ``get_config_dict``. ``from_spec`` turns a parsed spec into the constructor's call; override it
    when TARGET is not the first constructor argument.
    """

    kind: ClassVar[str] = ""
    help: ClassVar[str] = ""
    example: ClassVar[str] = ""
    #: TARGET when a spec gives none (e.g. ``bi-encoder`` -> all-mpnet-base-v2); None: TARGET required.
    default_target: ClassVar[str | None] = None

    name: str = "teacher"
    score_type: str = "logit"

    @classmethod
    def from_spec(cls, target: Any, options: dict[str, Any], *, corpus: Any = None) -> BaseTeacher:
        """Build from a parsed spec: ``cls(target or default_target, **options)``."""
        target = target or cls.default_target
        if not target:
            raise TeacherError(f"{cls.kind} needs a TARGET ({cls.help}): e.g. {cls.example!r}")
        return cls(target, **options)

    def score_many(
        self, queries: Sequence[str], docs: Sequence[Sequence[str]]
    ) -> list[list[float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        """The scores of one query's documents: ``score_many([query], [docs])[0]``."""
        return self.score_many([query], [docs])[0]

    def get_config_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        return teacher_fingerprint(self)


def check_lists(queries: Sequence[str], docs: Sequence[Sequence[str]]) -> None:
    """Raise unless there is one document list per query (the input check of every ``score_many``)."""
    if len(queries) != len(docs):
        raise TeacherError(f"got {len(queries)} queries but {len(docs)} document lists; one list per query")


def teacher_fingerprint(teacher: Teacher) -> str:
    """sha256 of the teacher's canonical config (which includes its weights' file hash), 16 hex chars."""
    config = teacher.get_config_dict()
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return sha256(blob).hexdigest()[:16]


# --- helpers shared by the teacher implementations (added with the non-LLM teachers) ---------------


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


def load_teacher_model(
    model: Any, cls: type, *, device: str | None = None, example: str = "", **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    """``distilir_index.models.load_model`` (the one loader) plus the weights' identity for the
    fingerprint: a caller's object is hashed by its state dict (it may have been changed in memory),
    a folder by its files, a hub id by the revision transformers resolved."""
    from distilir_index.models import load_model

    loaded, folder = load_model(model, cls, device=device, error=TeacherError, example=example, **kwargs)
    if isinstance(model, cls):
        identity = {
            "name": None,
            "path": None,
            "fingerprint": state_dict_fingerprint(loaded),
            "revision": None,
        }
        return loaded, identity
    return loaded, describe_model(str(model), folder, loaded)


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
