"""`TrainConfig`: everything that defines one distillation run, loadable from one YAML file and
overridable field by field from the command line.

YAML layout: one mapping per section (``student``, ``losses``, ``flops``, ``data``, ``optim``,
``eval``) plus a few top-level keys; every key is optional and defaults to the value of its field
below. Each field carries its help text in ``field(metadata={"help": ...})`` (the shape of
HfArgumentParser / Tevatron's ``arguments.py``), from which ``distilir train --print-reference``
renders the reference page ``docs/training-config.md`` (a test keeps the committed page equal to it).
A commented minimal config is ``docs/examples/run.yaml``; ``distilir train --print-config`` prints
the resolved config with every default filled in.

Overrides use the dotted path of a field: ``--optim.lr 2e-5``, ``--student.model paraphrase-MiniLM-L3-v2``,
``--losses.0.weight 0.5``, ``--losses '[{name: kl}]'`` (values are parsed as YAML, then converted to
the field's type). Unknown keys are rejected with the list of valid ones.

Why a hand-written loader (reviewed against the libraries in issue 15): the rules we need are (1)
unknown keys rejected with the valid keys *of that level* listed, (2) dotted overrides that reach into
the list of losses (``--losses.1.weight``), (3) override values parsed as YAML, (4) values typed by the
dataclass annotations, (5) errors in one shape, ``path: expected X, got Y. What to do.``, raised by the
same ``__post_init__`` checks as code-built configs. HfArgumentParser has no nesting and no YAML with
overrides; OmegaConf structured configs do (1)-(4) but address list items only through its own
interpolation syntax and raise its own exception types (a new core dependency for ~150 lines);
pydantic (a dependency of the service only, not of ``distilir``) would do (4) and a form of (1), but
(2), (3) and the per-level key lists stay ours either way. So the ~150 lines below stay, tested in
``tests/distilir/training/test_config.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONFIG_FILE",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FlopsConfig",
    "LossSpec",
    "OptimConfig",
    "StudentConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_override_args",
]

CONFIG_FILE = "config.yaml"


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the field, the value and the fix."""


def _fail(path: str, expected: str, got: Any, hint: str = "") -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {got!r}." + (f" {hint}" if hint else ""))


def _field(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    help: str,
    choices: tuple[str, ...] | None = None,
    registry: str | None = None,
) -> Any:
    """A config field with its help text in ``metadata["help"]`` (what ``docs/training-config.md``
    shows). ``choices``: the fixed values the field accepts (checked by :func:`_check_choices`);
    ``registry``: the ``"module:NAME"`` of the :class:`~distilir_index.registry.Registry` whose kinds
    it accepts (the reference lists them from it)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if registry is not None:
        metadata["registry"] = registry
    return field(default=default, default_factory=factory, metadata=metadata)


def _check_choices(obj: Any, section: str) -> None:
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        if choices is not None and getattr(obj, f.name) not in choices:
            raise _fail(f"{section}.{f.name}", " or ".join(repr(c) for c in choices), getattr(obj, f.name))


def _measure_cutoff(measure: str) -> int | None:
    """The rank cutoff of an ir_measures measure name (``nDCG@10`` -> 10, ``AP`` -> None)."""
    import ir_measures

    cutoff = ir_measures.parse_measure(measure).params.get("cutoff")
    return None if cutoff is None else int(cutoff)


# --------------------------------------------------------------------------- sections


@dataclass
class StudentConfig:
    """The model being trained."""

    kind: str = _field(
        "bi-encoder",
        registry="distilir.students:STUDENTS",
        help="what is trained: a student kind of `distilir.students.STUDENTS` (listed below); "
        "`bi_encoder` and `bi-encoder` are the same kind",
    )
    model: str = _field(
        "all-MiniLM-L6-v2",
        help="its weights: a packaged name (`all-MiniLM-L6-v2`, `paraphrase-MiniLM-L3-v2`, `splade-tiny`), "
        "a local folder or a hub id",
    )
    max_length: int | None = _field(
        128, help="truncation in tokens of queries and documents (null: the model's own setting)"
    )
    params: dict[str, Any] = _field(
        factory=dict,
        help="extra keyword arguments of the student class (e.g. `similarity: cosine`); each kind's "
        "are listed below",
    )

    def __post_init__(self) -> None:
        from distilir.students import STUDENTS

        if not isinstance(self.kind, str) or self.kind not in STUDENTS:
            raise _fail("student.kind", f"one of {', '.join(STUDENTS.kinds())}", self.kind)
        self.kind = STUDENTS.normalize(self.kind)
        if not isinstance(self.model, str) or not self.model.strip():
            raise _fail("student.model", "a model name, folder or hub id", self.model)
        if self.max_length is not None and self.max_length <= 0:
            raise _fail("student.max_length", "a positive number of tokens or null", self.max_length)


@dataclass
class LossSpec:
    """One term of the training loss: ``weight * build_loss(name, **params)``; the terms are summed."""

    name: str = _field(
        "kl",
        registry="distilir.losses:LOSSES",
        help="a loss of `distilir.losses.LOSSES` (listed below); `margin_mse` and `margin-mse` are one name",
    )
    weight: float = _field(
        1.0, help="its factor in the sum, > 0 (remove the entry rather than giving it weight 0)"
    )
    params: dict[str, Any] = _field(
        factory=dict,
        help="keyword arguments of the loss (e.g. `temperature: 0.05`); each loss's, with their "
        "defaults, are listed below",
    )
    inputs: dict[str, str] = _field(
        factory=dict,
        help="renames the loss's forward arguments to batch keys (see `distilir.losses.WeightedSum`); "
        "usually empty",
    )

    def __post_init__(self) -> None:
        from distilir.losses import LOSSES

        if not isinstance(self.name, str) or self.name not in LOSSES:
            raise _fail("losses[].name", f"one of {', '.join(LOSSES.kinds())}", self.name)
        self.name = LOSSES.normalize(self.name)
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise _fail(
                f"losses[{self.name}].weight",
                "a positive finite number",
                self.weight,
                "Remove the loss from the list instead of giving it weight 0.",
            )


@dataclass
class FlopsConfig:
    r"""The FLOPS regulariser of SPLADE students (Paria et al., ICLR 2020; Formal et al., SPLADE 2021);
    ignored for other student kinds.

    :math:`\ell_{FLOPS} = \sum_j (\frac{1}{B}\sum_i w_{ij})^2` over the vocabulary, for queries and
    documents separately, added to the loss as
    :math:`\lambda_q(t)\,\ell^q_{FLOPS} + \lambda_d(t)\,\ell^d_{FLOPS}` with
    :math:`\lambda(t) = \lambda \min(1, t / T)^2` (the quadratic warm-up of the SPLADE papers, which
    lets the model first learn to rank, then to be sparse). The values are handed to
    ``distilir.students.SpladeStudent`` (``flops_query``, ``flops_doc``, ``flops_warmup_steps``), which
    computes the terms; the trainer moves its schedule each step.
    """

    query_weight: float = _field(
        5e-4, help="λ_q, the weight of the queries' FLOPS term once warmed up (>= 0)"
    )
    document_weight: float = _field(
        5e-4, help="λ_d, the weight of the documents' FLOPS term once warmed up (>= 0)"
    )
    warmup_steps: int = _field(
        0,
        help="T: both weights grow as λ·min(1, t/T)² over these optimiser steps (0: full weight from "
        "the first step)",
    )

    def __post_init__(self) -> None:
        from distilir.students.flops import FlopsSchedule

        try:  # the student's own schedule checks the values (one rule for config and code)
            FlopsSchedule(self.query_weight, self.document_weight, self.warmup_steps)
        except ValueError as exc:
            raise ConfigError(f"flops.{exc} Give finite weights >= 0 and warmup_steps >= 0.") from None


@dataclass
class DataConfig:
    """Where the training lists come from and how each becomes a row of N candidates."""

    teacher_store: str | None = _field(
        None,
        help="folder of a teacher score store (`distilir teach --out`): teacher scores per query and "
        "document; required unless `lists_file` is given (or lists are passed in code)",
    )
    lists_file: str | None = _field(
        None,
        help='instead of a store, a JSONL file of ready lists, one `{"qid", "query", "doc_ids", "docs", '
        '"scores"}` object per line (`distilir.training.write_lists_jsonl` writes it)',
    )
    dataset: str | None = _field(
        None, help="the collection the store's ids refer to (the texts of its queries and documents)"
    )
    split: str = _field("train", help="which queries of the dataset to train on")
    candidates: str | None = _field(
        None,
        help="a candidates file (`distilir candidates --out`) restricting which scored pairs are used "
        "(null: every list the store holds for the split's queries)",
    )
    candidates_per_query: int = _field(
        8,
        help="N, the columns of the score tensors: column 0 the positive, then N-1 negatives; shorter "
        "lists are padded and masked",
    )
    positives: str = _field(
        "teacher",
        choices=("teacher", "qrels"),
        help="`teacher`: the teacher's top-scored document is column 0 (no qrels needed); `qrels`: the "
        "teacher's best-scored judged relevant document is (lists without one are dropped)",
    )
    negatives: str = _field(
        "random",
        choices=("random", "top"),
        help="`random`: N-1 of the other documents, drawn anew every epoch from the seed; `top`: the "
        "N-1 next best by teacher score",
    )
    teacher_scale: float = _field(
        1.0,
        help="multiply the teacher scores by this before the loss; Margin-MSE matches margins as they are, "
        "so bring the teacher's into the student's range (e.g. 0.05 for z-scored teacher scores and a "
        "cosine student); for listwise losses a temperature does the same",
    )
    max_queries: int | None = _field(
        None, help="train on the first that many lists, sorted by query id (null: all)"
    )
    min_relevance: int = _field(1, help="the qrels grade counted as relevant for `positives: qrels`")

    def __post_init__(self) -> None:
        if self.candidates_per_query < 2:
            raise _fail(
                "data.candidates_per_query",
                "an integer >= 2 (a positive and at least one negative)",
                self.candidates_per_query,
            )
        _check_choices(self, "data")
        if self.teacher_store and self.lists_file:
            raise _fail(
                "data",
                "either teacher_store or lists_file",
                {"teacher_store": self.teacher_store, "lists_file": self.lists_file},
                "Give one source of training lists.",
            )
        if not (math.isfinite(self.teacher_scale) and self.teacher_scale > 0):
            raise _fail("data.teacher_scale", "a positive finite number", self.teacher_scale)
        if self.max_queries is not None and self.max_queries <= 0:
            raise _fail("data.max_queries", "a positive integer or null", self.max_queries)


@dataclass
class OptimConfig:
    """Optimisation: AdamW with linear warm-up then linear decay to 0, gradient clipping.

    ``head_lr`` exists because a cross-encoder built from a bi-encoder checkpoint gets a random
    classification head, which needs a much larger rate than the pretrained body to learn in a few
    hundred steps. The schedule scales both rates alike.
    """

    batch_size: int = _field(16, help="lists (a query and its N candidates) per micro-batch")
    steps: int | None = _field(
        None,
        help="optimiser steps to train, each consuming `batch_size` × `grad_accumulation` lists "
        "(null: `epochs` decides)",
    )
    epochs: float = _field(1.0, help="passes over the lists when `steps` is null (fractions allowed)")
    lr: float = _field(2e-5, help="AdamW's peak learning rate (reached after the warm-up)")
    head_lr: float | None = _field(
        None,
        help="learning rate of the parameters the student initialised from scratch (a new "
        "cross-encoder head; e.g. 1e-3); null: `lr`",
    )
    warmup_steps: int | None = _field(
        None, help="linear warm-up steps (null: `warmup_ratio` of the total steps)"
    )
    warmup_ratio: float = _field(
        0.1, help="the warm-up as a fraction of the total steps, when `warmup_steps` is null"
    )
    weight_decay: float = _field(
        0.01, help="AdamW weight decay (biases and LayerNorm weights are not decayed)"
    )
    max_grad_norm: float | None = _field(
        1.0, help="clip the gradients' global norm to this (null: no clipping)"
    )
    grad_accumulation: int = _field(
        1, help="micro-batches per optimiser step (the gradients of all of them are averaged)"
    )
    seed: int = _field(
        42, help="seed of the list order, the negatives drawn, dropout and freshly initialised heads"
    )

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise _fail("optim.batch_size", "a positive integer", self.batch_size)
        if self.steps is not None and self.steps <= 0:
            raise _fail("optim.steps", "a positive integer or null (then optim.epochs is used)", self.steps)
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise _fail("optim.epochs", "a positive number", self.epochs)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise _fail("optim.lr", "a positive learning rate such as 2e-5", self.lr)
        if self.head_lr is not None and not (math.isfinite(self.head_lr) and self.head_lr > 0):
            raise _fail(
                "optim.head_lr", "a positive learning rate such as 1e-3, or null (then lr)", self.head_lr
            )
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise _fail(
                "optim.warmup_steps", "an integer >= 0 or null (then warmup_ratio is used)", self.warmup_steps
            )
        if not 0 <= self.warmup_ratio <= 1:
            raise _fail("optim.warmup_ratio", "a fraction in [0, 1]", self.warmup_ratio)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise _fail("optim.weight_decay", "a number >= 0", self.weight_decay)
        if self.max_grad_norm is not None and not (
            math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            raise _fail(
                "optim.max_grad_norm", "a positive number, or null to disable clipping", self.max_grad_norm
            )
        if self.grad_accumulation <= 0:
            raise _fail("optim.grad_accumulation", "a positive integer", self.grad_accumulation)


@dataclass
class EvalConfig:
    """Evaluation on a held-out split during and after training (skipped when ``dataset`` is null).

    Reported: ``metric``, then ``RR@10`` and ``R@k``; a measure whose cutoff exceeds the documents
    of each evaluated list (:attr:`list_depth`) would equal the measure at that depth under a wrong
    name, so the headline ``metric`` is refused here and the other two are dropped with a warning.
    The trainer selects no model on these numbers (the final student is the last step's); a split
    that shares queries with the training lists is warned about.
    """

    dataset: str | None = _field(None, help="the collection to evaluate on (null: no evaluation)")
    split: str = _field("test", help="its split whose judged queries are evaluated")
    every_n_steps: int = _field(0, help="evaluate every that many optimiser steps (0: only at the end)")
    at_end: bool = _field(True, help="evaluate the final student")
    mode: str = _field(
        "rerank",
        choices=("rerank", "retrieve"),
        help="`rerank`: the student scores each query's first-stage candidates (any student kind; "
        "cheap); `retrieve`: it encodes the corpus (or a slice of it) and searches it exactly "
        "(bi-encoder and SPLADE students)",
    )
    candidates: str | None = _field(
        None, help="a run file with the candidates to rerank (null: BM25's top `depth`)"
    )
    depth: int = _field(100, help="candidates per query reranked in `rerank` mode")
    k: int = _field(
        100,
        help="documents kept per query in the evaluated run (`retrieve`: searched for; `rerank`: the "
        "top k of the reranked `depth`); R@k is reported",
    )
    metric: str = _field(
        "nDCG@10",
        help="the ir_measures measure reported first, as the run's headline (e.g. nDCG@10); its cutoff "
        "may not exceed the evaluated list (`k`, and `depth` when reranking)",
    )
    max_queries: int | None = _field(
        None, help="evaluate a seeded sample of that many judged queries (null: all)"
    )
    corpus_sample: int | None = _field(
        None,
        help="`retrieve` over the judged documents of the evaluated queries plus that many others drawn "
        "with the seed (null: the whole corpus); numbers on a slice compare only with each other",
    )
    exclude_training_queries: bool = _field(
        False,
        help="leave out the queries that have a training list (collections with one split, e.g. "
        "ArguAna: distil on some queries, evaluate on the others)",
    )
    batch_size: int = _field(64, help="texts per forward pass when scoring or encoding")

    @property
    def list_depth(self) -> int:
        """Documents per query in the evaluated run: ``min(depth, k)`` reranked, ``k`` retrieved."""
        return min(self.depth, self.k) if self.mode == "rerank" else self.k

    def reported_measures(self) -> tuple[list[str], list[str]]:
        """``(reported, dropped)``: ``metric``, ``RR@10`` and ``R@k`` (without repeats), split by whether
        their cutoff fits in :attr:`list_depth`."""
        reported, dropped = [], []
        for measure in dict.fromkeys([self.metric, "RR@10", f"R@{self.k}"]):
            cutoff = _measure_cutoff(measure)
            (dropped if cutoff is not None and cutoff > self.list_depth else reported).append(measure)
        return reported, dropped

    def __post_init__(self) -> None:
        if self.every_n_steps < 0:
            raise _fail("eval.every_n_steps", "an integer >= 0 (0: only at the end)", self.every_n_steps)
        _check_choices(self, "eval")
        for name in ("depth", "k", "batch_size"):
            if getattr(self, name) <= 0:
                raise _fail(f"eval.{name}", "a positive integer", getattr(self, name))
        if self.max_queries is not None and self.max_queries <= 0:
            raise _fail("eval.max_queries", "a positive integer or null", self.max_queries)
        if self.corpus_sample is not None and self.corpus_sample < 0:
            raise _fail("eval.corpus_sample", "an integer >= 0 or null", self.corpus_sample)
        try:
            cutoff = _measure_cutoff(self.metric)
        except Exception as exc:  # noqa: BLE001 - ir_measures raises several types for bad names
            raise _fail(
                "eval.metric", "an ir_measures measure such as nDCG@10 or RR@10", self.metric
            ) from exc
        if cutoff is not None and cutoff > self.list_depth:
            import ir_measures

            within = str(ir_measures.parse_measure(self.metric)(cutoff=self.list_depth))
            limit = "eval.k" if self.mode == "retrieve" or self.k < self.depth else "eval.depth"
            raise _fail(
                "eval.metric",
                f"a cutoff of at most {self.list_depth}, the documents per query of the evaluated run "
                f"({limit} {self.list_depth})",
                self.metric,
                f"The run has nothing past rank {self.list_depth}: report {within}, or raise {limit}.",
            )


@dataclass
class TrainConfig:
    """One distillation run: the sections below plus where the run is written and how it is run."""

    student: StudentConfig = _field(factory=StudentConfig, help="the model being trained")
    losses: list[LossSpec] = _field(
        factory=lambda: [LossSpec(name="kl")],
        help="the loss terms, summed: total = Σ weight × loss; each name at most once",
    )
    flops: FlopsConfig = _field(factory=FlopsConfig, help="the FLOPS regulariser (SPLADE students only)")
    data: DataConfig = _field(factory=DataConfig, help="the training lists")
    optim: OptimConfig = _field(factory=OptimConfig, help="the optimiser and its schedule")
    eval: EvalConfig = _field(factory=EvalConfig, help="the held-out evaluation")
    output_dir: str = _field(
        "runs/train",
        help="the run folder: `config.yaml`, `metrics.jsonl`, `checkpoints/`, `student/` (the trained "
        "student with its `manifest.json`)",
    )
    checkpoint_every: int = _field(
        0,
        help="write a checkpoint every that many optimiser steps (0: none; the finished run's state is "
        "the saved student)",
    )
    keep_last: int = _field(
        2, help="checkpoints kept on disk (older ones are deleted once a newer one is complete)"
    )
    log_every: int = _field(1, help="steps between the loss lines of the progress bar and `metrics.jsonl`")
    device: str | None = _field(None, help="torch device (null: cuda if available, else cpu)")
    threads: int | None = _field(
        None,
        help="torch CPU threads of this process (null: torch's default, one per core); on a machine "
        "shared with other jobs fewer threads than cores is often faster",
    )
    progress: bool = _field(
        True,
        help="show progress bars (the trainer's, the evaluation's and those of transformers while it "
        "loads and saves weights); `distilir train --quiet` sets it false",
    )

    def __post_init__(self) -> None:
        clash = sorted(k for k in self.student.params if k.startswith("flops_"))
        if clash:
            raise _fail(
                "student.params",
                "no FLOPS settings (they belong in the flops section)",
                clash,
                "Use flops.query_weight, flops.document_weight and flops.warmup_steps.",
            )
        if not self.losses:
            raise _fail(
                "losses",
                "a non-empty list of {name, weight, params}",
                self.losses,
                "Give at least one loss, e.g. [{name: kl}].",
            )
        names = [spec.name for spec in self.losses]
        if len(set(names)) != len(names):
            raise _fail("losses", "each loss name at most once", names)
        if not self.output_dir:
            raise _fail("output_dir", "a folder path", self.output_dir)
        if self.checkpoint_every < 0:
            raise _fail("checkpoint_every", "an integer >= 0 (0: only at the end)", self.checkpoint_every)
        if self.keep_last < 1:
            raise _fail("keep_last", "an integer >= 1", self.keep_last)
        if self.threads is not None and self.threads < 1:
            raise _fail("threads", "a positive number of CPU threads, or null", self.threads)
        if self.log_every < 1:
            raise _fail("log_every", "an integer >= 1", self.log_every)

    # ------------------------------------------------------------------ (de)serialisation

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from plain data (as read from YAML); unknown keys and bad values raise ConfigError."""
        return _build(cls, data, "")

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], overrides: Sequence[str] | Mapping[str, Any] = ()
    ) -> TrainConfig:
        return load_config(path, overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML (atomically: a temporary file, then rename). ``path`` is a ``.yaml``
        / ``.yml`` file, or a run folder that receives ``config.yaml``."""
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            path = path / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def replace(self, overrides: Sequence[str] | Mapping[str, Any]) -> TrainConfig:
        """A copy with overrides applied (same syntax as :func:`load_config`)."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    def trajectory_dict(self, *, omit_neutral: bool = True) -> dict[str, Any]:
        """The fields that decide the sequence of weights (student, losses, data, optimisation), i.e.
        what must be equal for a checkpoint to be resumed under this config. Evaluation, logging and
        output settings may change between the interrupted and the resumed process.

        Fields added after checkpoints existed (``_ADDED_FIELDS``) are left out while they hold the
        value that reproduces the old behaviour, so those checkpoints keep their hash; with
        ``omit_neutral=False`` they are spelled out (as versions between their addition and this rule
        hashed them)."""
        d = self.to_dict()
        out = {key: d[key] for key in ("student", "losses", "flops", "data", "optim")}
        if omit_neutral:
            for (section, name), neutral in _ADDED_FIELDS.items():
                if out[section].get(name, neutral) == neutral:
                    out[section].pop(name, None)
        return out

    def trajectory_hash(self) -> str:
        return _hash(self.trajectory_dict())

    def accepted_trajectory_hashes(self) -> set[str]:
        """Hashes a checkpoint may carry to be resumed under this config (see :meth:`trajectory_dict`)."""
        return {self.trajectory_hash(), _hash(self.trajectory_dict(omit_neutral=False))}


def _hash(trajectory: dict[str, Any]) -> str:
    return sha256(json.dumps(trajectory, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: (section, field) -> the value under which a field added later changes nothing; see
#: :meth:`TrainConfig.trajectory_dict`. Add a field here when adding it to a trajectory section.
_ADDED_FIELDS: dict[tuple[str, str], Any] = {("optim", "head_lr"): None}


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> TrainConfig:
    """Read a YAML file (or start from the defaults when ``path`` is None) and apply overrides.

    ``overrides`` is either a list of command-line tokens (``["--optim.lr", "2e-5", "--data.split=dev"]``)
    or a mapping ``{"optim.lr": 2e-5}``.
    """
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"config file {p} does not exist; pass the path of a YAML file "
                "(see distilir.training.config)."
            )
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(
                f"{p}: expected a mapping of sections at the top level, got a {type(data).__name__}."
            )
    return TrainConfig.from_dict(apply_overrides(data, overrides))


def parse_override_args(tokens: Sequence[str]) -> dict[str, str]:
    """``["--optim.lr", "2e-5", "--data.split=dev"]`` -> ``{"optim.lr": "2e-5", "data.split": "dev"}``."""
    out: dict[str, str] = {}
    i = 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise ConfigError(
                f"unexpected argument {tok!r}: overrides are written --section.field VALUE "
                "(e.g. --optim.lr 2e-5)."
            )
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and not _looks_numeric(tokens[i + 1])):
                raise ConfigError(f"override --{key} has no value; write --{key} VALUE.")
            value = tokens[i + 1]
            i += 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with dotted-path overrides set. String values are parsed as YAML
    (``"[1, 2]"`` -> a list, ``"null"`` -> None); types are converted and checked when the config is built."""
    result = json.loads(json.dumps(data, default=str)) if data else {}
    if not isinstance(overrides, Mapping):
        overrides = parse_override_args(overrides)
    for dotted, raw in overrides.items():
        value = _parse_value(raw) if isinstance(raw, str) else raw
        parts = dotted.split(".")
        if not all(parts):
            raise ConfigError(f"bad override key {dotted!r}: expected dotted field names such as optim.lr.")
        _check_path(parts, dotted)
        node: Any = result
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = node[_list_index(part, node, ".".join(parts[: i + 1]))]
                continue
            nxt = node.get(part)
            if nxt is None:
                nxt = {} if part != "losses" else [dict(name=s.name) for s in TrainConfig().losses]
                node[part] = nxt
            node = nxt
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(last, node, dotted)] = value
        else:
            node[last] = value
    return result


def _list_index(part: str, node: list, path: str) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"{path}: expected a list index (0..{len(node) - 1}), got {part!r}.") from None
    if not 0 <= index < len(node):
        raise ConfigError(
            f"{path}: index {index} is out of range; the list has {len(node)} entries. "
            "Replace the whole list instead, e.g. --losses '[{name: kl}, {name: infonce, weight: 0.1}]'."
        )
    return index


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _check_path(parts: list[str], dotted: str) -> None:
    """Reject override keys that name no field, listing the valid ones at the level that failed."""
    cls: Any = TrainConfig
    for i, part in enumerate(parts):
        here = ".".join(parts[:i]) or "the top level"
        if cls is None:
            return  # inside a free-form dict (params): anything goes
        if _is_list_of_dataclass(cls):
            if not part.isdigit():
                raise ConfigError(f"{dotted}: {here} is a list; expected an index such as {here}.0.")
            cls = typing.get_args(cls)[0]
            continue
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{dotted}: {here} is a single value and has no field {part!r}.")
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise ConfigError(
                f"unknown config key {dotted!r}: {here} has no field {part!r}. "
                f"Valid fields there: {', '.join(sorted(hints))}."
            )
        target = _strip_optional(hints[part])
        if typing.get_origin(target) is dict:
            return
        cls = target if (dataclasses.is_dataclass(target) or _is_list_of_dataclass(target)) else _Leaf
    return


class _Leaf:  # marks a scalar field in _check_path
    pass


def _is_list_of_dataclass(tp: Any) -> bool:
    return typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0])


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _build(cls: type, data: Any, path: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise _fail(path or "config", f"a mapping of {cls.__name__} fields", data)
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        where = path or "the top level"
        raise ConfigError(
            f"unknown config key(s) {', '.join(repr(k) for k in unknown)} in {where}. "
            f"Valid keys there: {', '.join(sorted(hints))}."
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if path.startswith("losses"):  # name the list entry in the message
            raise ConfigError(f"{path}: {exc}") from None
        raise


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(path, "a value (this field cannot be null)", value)
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(item):
            value = [value]
        if not isinstance(value, list | tuple):
            raise _fail(path, "a list", value)
        return [_convert(item, v, f"{path}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, "a mapping", value)
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise _fail(path, "true or false", value)
    if tp is int:
        if isinstance(value, bool):
            raise _fail(path, "an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise _fail(path, "an integer", value)
    if tp is float:
        if isinstance(value, bool):
            raise _fail(path, "a number", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _fail(path, "a number", value) from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise _fail(path, "a string", value)
    return value
