"""The distillation trainer: teacher-scored lists in, a trained student folder with a manifest out.

Why an explicit torch loop rather than ``SentenceTransformerTrainer``: the sentence-transformers
trainers (one per model family) expect losses that take the *model* and tokenised columns, and a
fixed number of text columns per row. Our losses take score tensors (``[B, N]`` student and teacher
scores plus a mask, see :mod:`distilir.losses`), the same loss serves three student kinds, lists
have a variable length, the SPLADE regulariser has its own schedule, and a resumed run must replay
the exact same data order and loss curve. Wrapping all of that into a ``transformers.Trainer``
subclass means overriding ``compute_loss``, the sampler, the collator and the checkpoint hooks — most
of the trainer — while keeping its resume logic (skip N batches of a replayed dataloader) that we
cannot make exact for our sampler. The loop below is ~150 lines and each line is ours to test.
Library pieces are still used where they fit: ``torch.optim.AdamW``, ``transformers``' linear
warm-up/decay schedule and ``set_seed``, and the students save themselves as plain
sentence-transformers folders.

One optimiser step::

    lists  = sampler.next(batch_size)                 # seeded order, state (epoch, position)
    rows   = select_candidates(list, N)               # positive in column 0, N-1 negatives
    out    = student.forward_scores(queries, docs)    # [B, N] (+ in-batch matrix, FLOPS terms)
    loss   = sum_i w_i * loss_i(out, teacher, mask) + lambda_q(t) FLOPS_q + lambda_d(t) FLOPS_d
    loss.backward(); clip_grad_norm_; AdamW.step(); schedule.step()

Distributed: under ``torchrun --nproc_per_node N -m distilir.training train ...`` the student runs in
``DistributedDataParallel``, each process reads its slice of every global batch and InfoNCE sees the
documents of all processes (see :mod:`distilir.training.distributed`); rank 0 writes the run folder.

Run folder (``config.output_dir``)::

    config.yaml        the resolved TrainConfig
    metrics.jsonl      one JSON line per logged step and per evaluation
    checkpoints/       step-XXXXXXXX/ (see distilir.training.checkpoint), the last ``keep_last``
    student/           the final student (a sentence-transformers folder) + manifest.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from distilir.losses import InfoNCELoss, WeightedSum
from distilir.training._progress import library_progress_bars
from distilir.training._student import build_student, run_student, student_module
from distilir.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from distilir.training.config import CONFIG_FILE, ConfigError, TrainConfig
from distilir.training.data import (
    DataError,
    ListSampler,
    TrainingList,
    collate,
    negatives_rng,
    select_candidates,
)
from distilir.training.distributed import DistributedContext

__all__ = ["MANIFEST_FORMAT", "TrainResult", "Trainer", "TrainingError", "lists_fingerprint", "train"]

MANIFEST_FORMAT = "distilir-student/1"
STUDENT_DIR = "student"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"

#: Called after every optimiser step with (trainer, record); may raise to stop the run (tests do).
StepCallback = Callable[["Trainer", dict[str, Any]], None]


class TrainingError(ValueError):
    """Training cannot go on with these settings (a non-finite loss, an output folder that already
    holds another run, ...); the message says what to change."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns."""

    output_dir: Path
    student_dir: Path | None
    steps: int
    history: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]

    @property
    def final_metrics(self) -> dict[str, float]:
        return dict(self.evaluations[-1]["metrics"]) if self.evaluations else {}


def lists_fingerprint(lists: Sequence[TrainingList]) -> str:
    """sha256 over the training lists (ids, texts and scores, in order), 16 hex characters."""
    h = sha256()
    for lst in lists:
        h.update(json.dumps([lst.qid, lst.query, lst.doc_ids, lst.scores, sorted(lst.positives)]).encode())
        h.update(sha256("\x00".join(lst.docs).encode()).digest())
    return h.hexdigest()[:16]


class Trainer:
    """Distil teacher scores into a student.

    Args:
        config: the run (see :class:`distilir.training.TrainConfig`).
        student: an already built student (default: built from ``config.student``).
        lists: the training lists (default: read from ``config.data.teacher_store``).
        teacher: a description of the teacher for the manifest when ``lists`` are given in code
            (``{"fingerprint": ..., ...}``); read from the store's manifest otherwise.
        callbacks: functions called with ``(trainer, record)`` after every optimiser step.
        distributed: the process group context (default: detected from ``torch.distributed``).
        data_dir: folder of collections for ``data.dataset`` / ``eval.dataset`` (default
            ``$DISTILIR_DATA_DIR``).

    Example:
        ::

            config = load_config("train.yaml", ["--optim.steps", "200"])
            result = Trainer(config).train(resume="auto")
            SentenceTransformer(str(result.student_dir))
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        student: Any = None,
        lists: Sequence[TrainingList] | None = None,
        teacher: dict[str, Any] | None = None,
        callbacks: Iterable[StepCallback] = (),
        distributed: DistributedContext | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from transformers import set_seed

        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"config must be a TrainConfig, got {type(config).__name__}; use load_config(path)."
            )
        self.config = config
        self.dist = distributed or DistributedContext.detect()
        self.data_dir = str(data_dir) if data_dir is not None else None
        cuda = f"cuda:{self.dist.local_rank}" if self.dist.enabled else "cuda"
        self.device = torch.device(config.device or (cuda if torch.cuda.is_available() else "cpu"))
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output_dir)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        # Seed before anything random is created (a fresh cross-encoder head, dropout).
        set_seed(config.optim.seed)

        self.teacher_info: dict[str, Any] | None = teacher
        self.data_info: dict[str, Any] = {}
        if lists is None:
            lists, self.teacher_info, self.data_info = self._load_lists()
        self.lists = self._prepare_lists(list(lists))
        self.data_info.update(self._data_summary())

        if student is None:
            with library_progress_bars(config.progress):
                student = build_student(
                    config.student, flops=config.flops, seed=config.optim.seed, device=self.device
                )
        self.student = student
        self.module = student_module(self.student)
        self.module.to(self.device)
        self.loss_fn = self._build_loss().to(self.device)
        if self.dist.enabled and self.loss_fn.uses_in_batch:
            self.student.in_batch_gather = self.dist.gather_in_batch  # negatives of every process
        # What the loop calls forward_scores on: the student, or under torchrun the student in DDP.
        self.forward = self.dist.wrap(self.student, self.module)

        optim = config.optim
        self.lists_per_step = optim.batch_size * optim.grad_accumulation
        self.sampler = ListSampler(
            len(self.lists), optim.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )
        if optim.steps is not None:
            self.total_steps = optim.steps
        else:
            self.total_steps = max(
                1, math.ceil(optim.epochs * self.sampler.items_per_epoch / self.lists_per_step)
            )
        warmup = (
            optim.warmup_steps
            if optim.warmup_steps is not None
            else round(optim.warmup_ratio * self.total_steps)
        )
        self.warmup_steps = min(int(warmup), self.total_steps)
        self.optimizer = self._build_optimizer()
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, self.warmup_steps, self.total_steps)

        self.evaluator = None
        if config.eval.dataset is not None:
            from distilir.training.dev_eval import DevEvaluator

            self.evaluator = DevEvaluator(
                config.eval,
                seed=optim.seed,
                data_dir=self.data_dir,
                progress=config.progress,
                student_kind=config.student.kind,
                training_queries=[x.qid for x in self.lists],
                training_dataset=config.data.dataset,
            )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.resumed_from: list[dict[str, Any]] = []
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ setup helpers

    def _load_lists(self) -> tuple[list[TrainingList], dict[str, Any] | None, dict[str, Any]]:
        from distilir.training.lists import load_training_lists

        return load_training_lists(self.config.data, data_dir=self.data_dir)

    def _prepare_lists(self, lists: list[TrainingList]) -> list[TrainingList]:
        data = self.config.data
        if not lists:
            raise DataError("no training lists: the teacher store holds no scored lists for these queries.")
        lists = sorted(lists, key=lambda x: x.qid)
        if len({x.qid for x in lists}) != len(lists):
            raise DataError("two training lists have the same query id; give one list per query.")
        too_short = [x.qid for x in lists if len(x.doc_ids) < 2]
        lists = [x for x in lists if len(x.doc_ids) >= 2]
        if data.positives == "qrels":
            before = len(lists)
            lists = [x for x in lists if any(d in x.positives for d in x.doc_ids)]
            self.data_info["dropped_without_judged_positive"] = before - len(lists)
        if data.max_queries is not None:
            lists = lists[: data.max_queries]
        if not lists:
            raise DataError(
                "no usable training lists (each needs >= 2 candidates"
                + (" and a judged relevant one, for positives: qrels" if data.positives == "qrels" else "")
                + ")."
            )
        self.data_info["dropped_too_short"] = len(too_short)
        return lists

    def _data_summary(self) -> dict[str, Any]:
        data = self.config.data
        sizes = [len(x.doc_ids) for x in self.lists]
        return {
            "teacher_store": data.teacher_store,
            "dataset": data.dataset,
            "split": data.split,
            "lists": len(self.lists),
            "candidates_per_query": data.candidates_per_query,
            "candidates_in_lists": {"min": min(sizes), "max": max(sizes), "mean": sum(sizes) / len(sizes)},
            "positives": data.positives,
            "negatives": data.negatives,
            "teacher_scale": data.teacher_scale,
            "lists_fingerprint": lists_fingerprint(self.lists),
        }

    def _build_loss(self) -> WeightedSum:
        from distilir.losses import build_loss

        entries = [dataclasses.asdict(spec) for spec in self.config.losses]  # the one entry format
        loss = build_loss("weighted-sum", losses=entries)
        if self.dist.enabled:
            for part in loss.losses:
                if isinstance(part, InfoNCELoss):
                    part.gather_documents = self.dist.gather_documents
        return loss

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases and LayerNorm weights (BERT's recipe, as HF Trainer does);
        a freshly initialised head at ``optim.head_lr`` when set."""
        optim = self.config.optim
        new_ids: set[int] = set()
        if optim.head_lr is not None:
            new_ids = {id(p) for p in self.student.new_parameters()}
            if not new_ids:
                raise ConfigError(
                    f"optim.head_lr is set ({optim.head_lr}) but the student "
                    f"({self.config.student.kind}: {self.config.student.model}) has no freshly initialised "
                    "parameters (only a cross-encoder built from a checkpoint without a classification head "
                    "has). Remove optim.head_lr."
                )
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.module.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.dim() < 2 or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((id(p) in new_ids, no_decay), []).append(p)
        param_groups = [
            {
                "params": params,
                "weight_decay": 0.0 if no_decay else optim.weight_decay,
                "lr": optim.head_lr if head else optim.lr,
            }
            for (head, no_decay), params in sorted(groups.items(), key=lambda item: item[0])
        ]
        return torch.optim.AdamW(param_groups, lr=optim.lr)

    # ------------------------------------------------------------------ the loop

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / CHECKPOINT_DIR

    def train(self, resume: str | os.PathLike[str] | bool | None = None) -> TrainResult:
        """Train to ``total_steps``, evaluating and checkpointing on the way; save the final student.

        Args:
            resume: ``None``/``False`` = start fresh (refuses an output_dir that already has
                checkpoints), ``"auto"``/``True`` = continue from the latest complete checkpoint in
                output_dir if there is one, or a path to a checkpoint folder. A fresh start
                begins a new ``metrics.jsonl`` in output_dir.
        """
        cfg = self.config
        ckpt = self._resolve_resume(resume)
        if self.evaluator is not None and self.dist.is_main:
            self.evaluator.prepare()  # evaluation settings fail, and overlaps warn, before step 1
        if ckpt is not None:
            self._restore(ckpt)
        else:
            # A fresh start: the random stream (dropout) starts from the seed here, whatever ran
            # between __init__ and now, and metrics.jsonl describes this run only.
            from transformers import set_seed

            set_seed(cfg.optim.seed)
            if self.dist.is_main:
                (self.output_dir / METRICS_FILE).unlink(missing_ok=True)
        if self.dist.is_main:
            cfg.save(self.output_dir / CONFIG_FILE)
        started = time.perf_counter()
        session_start = self.train_seconds
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not (cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        try:
            self.module.train()
            while self.step < self.total_steps:
                record = self._train_step()
                self.train_seconds = session_start + time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._append_metrics({"type": "train", **record})
                due_eval = cfg.eval.every_n_steps and self.step % cfg.eval.every_n_steps == 0
                last = self.step == self.total_steps and cfg.eval.at_end  # evaluated once, after the loop
                if self.evaluator is not None and due_eval and not last:
                    self._evaluate()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                for callback in self.callbacks:
                    callback(self, record)
        finally:
            bar.close()
        if (
            self.evaluator is not None
            and cfg.eval.at_end
            and (not self.evaluations or self.evaluations[-1]["step"] != self.step)
        ):
            self._evaluate()
        student_dir = self.save_student() if self.dist.is_main else None
        manifest = json.loads((student_dir / "manifest.json").read_text()) if student_dir else {}
        return TrainResult(
            self.output_dir, student_dir, self.step, list(self.history), list(self.evaluations), manifest
        )

    def _train_step(self) -> dict[str, Any]:
        cfg, optim = self.config, self.config.optim
        step = self.step
        self.loss_fn.set_progress(step, self.total_steps)
        self.student.set_progress(step)  # SPLADE: the FLOPS weights' warm-up
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        components: dict[str, float] = {}
        epoch_at_start = self.sampler.epoch + self.sampler.position / self.sampler.items_per_epoch
        for micro in range(optim.grad_accumulation):
            picked = self.sampler.next_indices(optim.batch_size)
            rows = []
            for epoch, index in picked:
                lst = self.lists[index]
                idx = select_candidates(
                    lst,
                    cfg.data.candidates_per_query,
                    positives=cfg.data.positives,
                    negatives=cfg.data.negatives,
                    rng=negatives_rng(optim.seed, epoch, index),
                )
                rows.append((lst, idx))
            batch = collate(rows, cfg.data.candidates_per_query)
            # Under DDP only the last micro-batch of a step all-reduces the gradients.
            with self.dist.no_sync(self.forward, sync=micro == optim.grad_accumulation - 1):
                out, loss_inputs = run_student(
                    self.forward,
                    batch.queries,
                    batch.docs,
                    batch.teacher_scores.to(self.device) * cfg.data.teacher_scale,
                    batch.mask.to(self.device),
                )
                loss = self.loss_fn(**loss_inputs)
                for name, value in self.loss_fn.last_components.items():
                    components[name] = components.get(name, 0.0) + value / optim.grad_accumulation
                if out.regularization_loss is not None:
                    loss = loss + out.regularization_loss
                for key, value in out.regularization.items():
                    components[key] = (
                        components.get(key, 0.0) + float(value.detach()) / optim.grad_accumulation
                    )
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss is {float(loss.detach())} at step {step + 1} (queries {batch.qids[:5]}). "
                        "Lower optim.lr, "
                        "check the teacher scores' scale (temperatures), or enable optim.max_grad_norm."
                    )
                (loss / optim.grad_accumulation).backward()
                total += float(loss.detach()) / optim.grad_accumulation
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self.forward is self.student:  # under DDP the backward pass has averaged the gradients
            self.dist.all_reduce_gradients(params)
        if optim.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm))
        else:
            grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        lr = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        record = {
            "step": self.step,
            "loss": self.dist.mean(total),
            "lr": lr,
            "grad_norm": grad_norm,
            "epoch": round(epoch_at_start, 6),
            "components": {k: self.dist.mean(v) for k, v in components.items()},
        }
        record.update(self.student.log_values())
        self.history.append(record)
        return record

    def _evaluate(self) -> dict[str, Any] | None:
        if not self.dist.is_main:  # under DDP rank 0 evaluates; the others wait for it
            self.dist.barrier()
            return None
        start = time.perf_counter()
        metrics = self.evaluator(self.student)  # type: ignore[misc]
        entry = {"step": self.step, "metrics": metrics, "seconds": round(time.perf_counter() - start, 3)}
        self.evaluations.append(entry)
        self._append_metrics({"type": "eval", **entry})
        if self.config.progress and self.dist.is_main:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            tqdm.write(f"step {self.step}: {self.config.eval.dataset}/{self.config.eval.split} {shown}")
        self.dist.barrier()
        return entry

    def evaluate(self) -> dict[str, float]:
        """Evaluate the current student now (needs ``eval.dataset``)."""
        if self.evaluator is None:
            raise ValueError("no evaluation configured: set eval.dataset (and eval.split) in the config.")
        entry = self._evaluate()
        return entry["metrics"] if entry is not None else {}  # {} on ranks other than 0 under DDP

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only); returns its folder. Under DDP every
        process's RNG state is stored (each draws its own dropout masks), so all must call this."""
        rng_by_rank = self.dist.gather_objects(capture_rng_state())
        if not self.dist.is_main:
            return None
        state = {
            "step": self.step,
            "total_steps": self.total_steps,
            "sampler": self.sampler.state_dict(),
            "history": self.history,
            "evaluations": self.evaluations,
            "trajectory_hash": self.config.trajectory_hash(),
            "lists_fingerprint": self.data_info["lists_fingerprint"],
            "train_seconds": self.train_seconds,
            "resumed_from": self.resumed_from,
            "created": _now(),
        }
        tensors = {
            "student": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "rng": rng_by_rank[0],
        }
        if self.dist.enabled:
            tensors["rng_by_rank"] = rng_by_rank
        return save_checkpoint(
            self.checkpoint_root, self.step, tensors=tensors, state=state, keep_last=self.config.keep_last
        )

    def _resolve_resume(self, resume: str | os.PathLike[str] | bool | None) -> Path | None:
        if resume is None or resume is False:
            existing = latest_checkpoint(self.checkpoint_root)
            if existing is not None:
                raise TrainingError(
                    f"{self.output_dir} already holds checkpoints (latest {existing.name}). Resume with "
                    "resume='auto' (CLI: --resume auto), or choose another output_dir to start afresh."
                )
            return None
        if resume is True or resume == "auto":
            return latest_checkpoint(self.checkpoint_root)
        path = Path(resume)
        if not path.is_dir():
            raise CheckpointError(
                f"checkpoint {path} does not exist; pass a folder under {self.checkpoint_root}."
            )
        return path

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        state = ckpt["state"]
        if state.get("trajectory_hash") not in self.config.accepted_trajectory_hashes():
            raise CheckpointError(
                f"{path} was written by a run with other student/loss/data/optimisation settings "
                f"(config hash {state.get('trajectory_hash')} vs {self.config.trajectory_hash()}); compare "
                f"its {CONFIG_FILE} with this config. Only eval, logging and output settings may change "
                "on resume."
            )
        if state.get("lists_fingerprint") != self.data_info["lists_fingerprint"]:
            raise CheckpointError(
                f"{path} was trained on other lists (fingerprint {state.get('lists_fingerprint')} vs "
                f"{self.data_info['lists_fingerprint']}); the teacher store or dataset changed since."
            )
        missing = [k for k in ("student", "optimizer", "scheduler", "loss", "rng") if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"{path} lacks {missing}; it is damaged. Resume from an earlier checkpoint."
            )
        self.module.load_state_dict(ckpt["student"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.loss_fn.load_state_dict(ckpt["loss"])  # TAID's last loss is its extra state
        self.sampler.load_state_dict(state["sampler"])
        by_rank = ckpt.get("rng_by_rank")
        if self.dist.enabled and by_rank is not None and len(by_rank) == self.dist.world_size:
            restore_rng_state(by_rank[self.dist.rank])
        else:  # single process, or a checkpoint of another world size: rank 0's stream for all
            restore_rng_state(ckpt["rng"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.evaluations = list(state["evaluations"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.resumed_from = list(state.get("resumed_from", [])) + [
            {"checkpoint": str(path), "step": self.step, "at": _now()}
        ]
        self._truncate_metrics(self.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metrics.jsonl lines written after ``step`` by the interrupted process (they are
        written again by the resumed one), so the file reads as one uninterrupted run."""
        file = self.output_dir / METRICS_FILE
        if not (self.dist.is_main and file.is_file()):
            return
        kept = []
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line).get("step", 0)) <= step:
                    kept.append(line)
            except (json.JSONDecodeError, TypeError, ValueError):
                continue  # a line cut short by the kill
        tmp = file.with_name(file.name + ".partial")
        tmp.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
        os.replace(tmp, file)

    # ------------------------------------------------------------------ the final artifact

    def save_student(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the student as a sentence-transformers folder with ``manifest.json``, atomically
        (written to ``<path>.partial`` and renamed into place)."""
        final = Path(path) if path is not None else self.output_dir / STUDENT_DIR
        tmp = final.with_name(final.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with library_progress_bars(self.config.progress):
                self.student.save(str(tmp))
            manifest = self.manifest(base=_read_json(tmp / "manifest.json"))
            (tmp / "manifest.json").write_text(
                json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
            )
            if final.exists():
                old = final.with_name(final.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def manifest(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The student's manifest: what was trained, from which teacher and data, how, and how well.

        ``base`` is the manifest the student wrote itself (``distilir-student/1``: format, kind, its
        config, producer, created); its keys are kept and the training record is added beside them,
        so ``distilir.students`` can still load the folder."""
        import sentence_transformers
        import transformers

        from distilir import __version__

        cfg = self.config
        losses = self.loss_fn.get_config_dict()
        if cfg.student.kind == "splade":
            losses["flops"] = {**cfg.flops.__dict__}
        base = dict(base or {})
        producer = {
            **base.get("producer", {}),
            "name": "distilir",
            "version": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        }
        return {
            **base,
            "format": base.get("format", MANIFEST_FORMAT),
            "kind": base.get("kind", cfg.student.kind),
            "created": base.get("created", _now()),
            "student": {
                "kind": cfg.student.kind,
                "model": cfg.student.model,
                "config": self.student.get_config_dict(),
                "loads_with": self.student.loads_with,
            },
            "teacher": self.teacher_info,
            "losses": losses,
            "data": self.data_info,
            "optimisation": {
                **cfg.optim.__dict__,
                "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps,
            },
            "steps": self.step,
            "seed": cfg.optim.seed,
            "epochs": round(self.step * self.lists_per_step / self.sampler.items_per_epoch, 4),
            "metrics": {
                "final": self.evaluations[-1]["metrics"] if self.evaluations else None,
                "evaluation": self.evaluator.describe() if self.evaluator is not None else None,
                "history": self.evaluations,
                "final_train_loss": self.history[-1]["loss"] if self.history else None,
            },
            "time": {"train_seconds": round(self.train_seconds, 3), "finished": _now()},
            "resumed_from": self.resumed_from,
            "producer": producer,
            "training_config": cfg.to_dict(),
        }


def train(
    config: TrainConfig, resume: str | os.PathLike[str] | bool | None = None, **kwargs: Any
) -> TrainResult:
    """``Trainer(config, **kwargs).train(resume)``."""
    return Trainer(config, **kwargs).train(resume=resume)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
