"""The `Student` protocol and what all students share: batch layout, output for the losses, save/load.

A student turns a batch of queries and their candidate lists into a ``[B, N]`` score tensor *with
gradients* — exactly what :mod:`distilir.losses` consume::

    out = student.forward_scores(queries, docs_lists, mask)      # StudentOutput
    loss = loss_fn(**out.loss_inputs(teacher_scores))            # any loss or WeightedSum
    (loss + out.regularization_loss).backward()                  # SPLADE adds its FLOPS term

``student.score(queries, docs_lists)`` is ``forward_scores(...).scores``. Bi-encoder and SPLADE
students also encode texts on their own (:class:`EncoderStudent`); a cross-encoder only scores pairs.

On disk a student is the folder of its underlying sentence-transformers model (loadable by
sentence-transformers itself, e.g. to build an index) plus ``manifest.json``::

    {"format": "distilir-student/1", "kind": "bi-encoder" | "splade" | "cross-encoder",
     "config": {...get_config_dict()...}, "producer": {"name": "distilir", "version": str, "python": str},
     "created": ISO-8601 UTC}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from distilir_index.registry import normalize_kind
from torch import Tensor, nn

from distilir.io import atomic_directory, producer

__all__ = [
    "STUDENT_FORMAT",
    "BaseStudent",
    "BatchLayout",
    "EncoderStudent",
    "Student",
    "StudentError",
    "StudentOutput",
    "layout_batch",
    "read_student_manifest",
]

STUDENT_FORMAT = "distilir-student/1"
MANIFEST = "manifest.json"


class StudentError(ValueError):
    """A student was given input it cannot use, or a folder that is not a saved student."""


@runtime_checkable
class Student(Protocol):
    """What the trainer needs from any student (an ``nn.Module``; :class:`BaseStudent` gives the hooks
    their no-op defaults)."""

    kind: str

    def forward_scores(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> StudentOutput: ...

    def set_progress(self, step: int) -> Any: ...

    def new_parameters(self) -> list[nn.Parameter]: ...

    def log_values(self) -> dict[str, Any]: ...

    def score(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> Tensor: ...

    def save(self, path: str | os.PathLike[str]) -> Path: ...

    def get_config_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class EncoderStudent(Student, Protocol):
    """A student that encodes queries and documents separately (bi-encoder, SPLADE)."""

    def encode_queries(self, texts: Sequence[str]) -> Tensor: ...

    def encode_documents(self, texts: Sequence[str]) -> Tensor: ...


@dataclass
class StudentOutput:
    """Scores of one batch, ready for the losses.

    Attributes:
        scores: [B, N] scores with gradients; 0.0 at padding.
        mask: [B, N] bool, False = padding.
        in_batch_scores: [B, M] each query against every real document of the batch (its own and the
            other queries'), documents in row-major order of the real entries; None for cross-encoders.
        positive_idx: [B] column of each query's own column-0 document in ``in_batch_scores``.
        in_batch_mask: [B, M] False where a document is a copy (same text) of the query's positive
            listed elsewhere in the batch, i.e. a false in-batch negative; None when there is none.
        regularization: unweighted regularisers by name (SPLADE: ``flops_query``, ``flops_doc``).
        regularization_loss: the weighted sum of the regularisers at the current schedule step, to
            add to the loss (0-dim tensor; zero for students without regularisers).
    """

    scores: Tensor
    mask: Tensor
    in_batch_scores: Tensor | None = None
    positive_idx: Tensor | None = None
    in_batch_mask: Tensor | None = None
    regularization: dict[str, Tensor] = field(default_factory=dict)
    regularization_loss: Tensor | None = None

    def loss_inputs(self, teacher_scores: Tensor) -> dict[str, Tensor]:
        """The named inputs :class:`distilir.losses.WeightedSum` (or ``loss.from_inputs``) reads."""
        inputs = {"student_scores": self.scores, "teacher_scores": teacher_scores, "mask": self.mask}
        for key in ("in_batch_scores", "positive_idx", "in_batch_mask"):
            value = getattr(self, key)
            if value is not None:
                inputs[key] = value
        return inputs


@dataclass(frozen=True)
class BatchLayout:
    """Where the real (unpadded) documents of a batch sit.

    ``flat_docs[k]`` is the document at ``(rows[k], cols[k])``, in row-major order."""

    queries: list[str]
    flat_docs: list[str]
    rows: Tensor
    cols: Tensor
    mask: Tensor

    @property
    def batch_size(self) -> int:
        return len(self.queries)

    @property
    def group_size(self) -> int:
        return int(self.mask.shape[1])

    def scatter(self, flat_scores: Tensor) -> Tensor:
        """[M] scores of the real documents -> [B, N] with 0.0 at padding (gradients kept)."""
        out = flat_scores.new_zeros(self.batch_size, self.group_size)
        return out.index_put((self.rows.to(out.device), self.cols.to(out.device)), flat_scores)

    def positive_index(self) -> Tensor | None:
        """Index in ``flat_docs`` of each query's column-0 document (None if some column 0 is padding)."""
        if not bool(self.mask[:, 0].all()):
            return None
        counts = self.mask.sum(dim=1)
        return torch.cumsum(counts, 0) - counts

    def false_negative_mask(self) -> Tensor | None:
        """[B, M] False where a document has the same text as the query's positive but is another entry."""
        pos = self.positive_index()
        if pos is None:
            return None
        keep = torch.ones(self.batch_size, len(self.flat_docs), dtype=torch.bool)
        where: dict[str, list[int]] = {}
        for k, text in enumerate(self.flat_docs):
            where.setdefault(text, []).append(k)
        for i, p in enumerate(pos.tolist()):
            for k in where[self.flat_docs[p]]:
                if k != p:
                    keep[i, k] = False
        return None if bool(keep.all()) else keep


def _is_text_list(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def layout_batch(
    queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
) -> BatchLayout:
    """Check a batch and lay it out. Ragged ``docs_lists`` are padded (the mask is built); with an explicit
    ``mask`` the lists must all be ``mask.shape[1]`` long and masked entries are never encoded."""
    if not _is_text_list(queries) or not all(isinstance(q, str) for q in queries):
        raise StudentError(
            f"queries must be a list of strings, got {type(queries).__name__}"
            + (" (a single string: wrap it in a list)" if isinstance(queries, str) else "")
        )
    if not queries:
        raise StudentError("got an empty batch: queries is an empty list")
    if not _is_text_list(docs_lists) or len(docs_lists) != len(queries):
        n = len(docs_lists) if _is_text_list(docs_lists) else type(docs_lists).__name__
        raise StudentError(
            f"docs_lists must hold one list of documents per query: {len(queries)} queries, got {n}"
        )
    for i, docs in enumerate(docs_lists):
        if not _is_text_list(docs) or not all(isinstance(d, str) for d in docs):
            raise StudentError(f"docs_lists[{i}] must be a list of strings, got {type(docs).__name__}")
        if not docs:
            raise StudentError(f"docs_lists[{i}] is empty; every query needs at least one document")
    lengths = [len(d) for d in docs_lists]
    n = max(lengths)
    if mask is None:
        mask = torch.zeros(len(queries), n, dtype=torch.bool)
        for i, k in enumerate(lengths):
            mask[i, :k] = True
    else:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (len(queries), n):
            got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise StudentError(
                f"mask must be a bool tensor of shape [{len(queries)}, {n}] (queries x documents), got {got}"
            )
        if len(set(lengths)) != 1:
            raise StudentError(
                f"with a mask, every document list must have {n} entries; lengths are {lengths}"
            )
        mask = mask.cpu()
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise StudentError(f"rows {empty} have no unmasked document")
    rows, cols = mask.nonzero(as_tuple=True)
    flat_docs = [docs_lists[r][c] for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    return BatchLayout(list(queries), flat_docs, rows, cols, mask)


def read_student_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``path/manifest.json`` of a saved student."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise StudentError(
            f"{path} is not a saved distilir student (no {MANIFEST}); save one with student.save(path), or "
            "name the folder as the `model` of a student class to start from plain sentence-transformers "
            "weights."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StudentError(f"{file} is not valid JSON ({exc}); the student folder is damaged.") from exc
    if manifest.get("format") != STUDENT_FORMAT:
        raise StudentError(f"{file} has format {manifest.get('format')!r}; expected {STUDENT_FORMAT!r}.")
    return manifest


class BaseStudent(nn.Module):
    """Common machinery: device, ``score``, atomic ``save`` and ``load``.

    Subclasses set ``kind`` (the registry name, :data:`distilir.students.STUDENTS`), ``help`` and
    ``loads_with`` (the sentence-transformers class that opens the saved folder), hold their model in
    ``self.model``, and implement ``forward_scores`` and ``get_config_dict`` (whose keys are the
    constructor's keyword arguments). The training hooks below have no-op defaults.
    """

    kind: ClassVar[str] = "student"
    help: ClassVar[str] = ""
    loads_with: ClassVar[str] = ""
    model: nn.Module
    #: Distributed training hook, set by the trainer (``DistributedContext.gather_in_batch``) when a
    #: loss reads the in-batch matrix; students without one ignore it.
    in_batch_gather: Any = None

    @classmethod
    def training_kwargs(cls, *, flops: Any = None, seed: int | None = None) -> dict[str, Any]:
        """Constructor arguments this kind takes from the run rather than from ``student.params``:
        SPLADE the FLOPS weights of ``flops`` (a ``FlopsConfig``), a cross-encoder the seed of its new
        head. None by default."""
        return {}

    def set_progress(self, step: int) -> Any:
        """Called with the optimiser step before each step (SPLADE: the FLOPS warm-up); no-op."""

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters initialised from scratch when the student was built (a new head): none."""
        return []

    def log_values(self) -> dict[str, Any]:
        """Values recorded in each step of the training history (SPLADE: the FLOPS weights): none."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward_scores(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> StudentOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> StudentOutput:
        return self.forward_scores(queries, docs_lists, mask)

    def score(
        self, queries: Sequence[str], docs_lists: Sequence[Sequence[str]], mask: Tensor | None = None
    ) -> Tensor:
        """[B, N] scores with gradients (0.0 at padding); ragged lists are padded at the end."""
        return self.forward_scores(queries, docs_lists, mask).scores

    def get_config_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model folder and ``manifest.json`` to ``path``.

        The folder is written beside ``path`` under a temporary name and moved into place with
        ``os.replace``, so ``path`` never holds a half-written student; an existing student at
        ``path`` is replaced (it is moved aside first and removed after the new one is in place).
        """
        path = Path(path)
        config = self.get_config_dict()
        with atomic_directory(path) as tmp:
            self._write_model(tmp)
            manifest = {
                "format": STUDENT_FORMAT,
                "kind": self.kind,
                "config": config,
                "producer": producer(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            (tmp / MANIFEST).write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        return path

    def _write_model(self, folder: Path) -> None:
        """Hook of :meth:`save`: write the model's own folder (sentence-transformers format)."""
        self.model.save(str(folder), create_model_card=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **overrides: Any) -> BaseStudent:
        """Load a student saved by :meth:`save` (``overrides`` replace saved constructor arguments)."""
        manifest = read_student_manifest(path)
        if normalize_kind(str(manifest.get("kind"))) != cls.kind:
            raise StudentError(
                f"{path} holds a {manifest.get('kind')!r} student, not a {cls.kind!r} one; use "
                "distilir.students.load_student(path), which picks the right class."
            )
        config = dict(manifest.get("config", {}))
        config.update(overrides)
        config["model"] = str(Path(path).resolve()) if "model" not in overrides else overrides["model"]
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


def resolve_prompt(model: Any, kind: str, explicit: str | None) -> str | None:
    """The prompt sentence-transformers' ``encode_query`` / ``encode_document`` would use."""
    if explicit is not None:
        return explicit
    prompts = getattr(model, "prompts", None) or {}
    names = ("query",) if kind == "query" else ("document", "passage", "corpus")
    for name in names:
        if name in prompts:
            return prompts[name]
    default = getattr(model, "default_prompt_name", None)
    return prompts.get(default) if default is not None else None
