"""Query-side distillation on a frozen index: upgrade a served dense retriever without re-indexing.

Only the query encoder is trained. The document vectors are read once from an existing
``distilir_index`` dense index and never change (the index's files are only read), so the trained
encoder drops into the service in place of the old one. Because the corpus is fixed, every corpus
document can be a negative: the student's distribution is a full softmax over the corpus,
``p_s(d | q) = softmax_d(q . D / tau_s)`` — a few thousand to a few hundred thousand dot products per
query, cheap next to the encoder's forward pass.

Losses (weights in :class:`QuerySideConfig`; each is a sum over a query's teacher-scored candidates
``C`` and averaged over the batch; ``t`` are the teacher's scores after per-query normalisation,
``p_t = softmax(t / tau_t)`` over ``C``):

* ``full_kl``: ``-sum_{d in C} p_t(d) log p_s(d)`` with ``p_s`` over the *whole corpus*: the
  teacher's distribution over its candidates, every other document pushed towards 0. (Equal to
  ``KL(p_t || p_s)`` up to the constant entropy of ``p_t``.)
* ``list_kl``: listwise KL with both distributions over ``C`` only
  (:class:`distilir.losses.ListwiseKLLoss`).
* ``margin_mse``: Margin-MSE between the student's cosine margins and ``scale * t`` margins, the
  teacher's top candidate against each other (:class:`distilir.losses.MarginMSELoss`); ``scale`` is
  calibrated to the student's own mean margin on the first batches
  (:func:`distilir.training.scales.calibrate_margin_scale`) unless ``margin_scale`` is given.
* ``infonce``: InfoNCE with the teacher's top candidate as the positive and the whole corpus as
  negatives, except candidates whose min-max normalised teacher score is at least
  ``false_negative_threshold`` (teacher-masked false negatives).

Before the first step the teacher itself is checked (:func:`teacher_check`): the dev queries'
teacher-scored lists are ranked by the teacher and by the base student, both evaluated; a teacher
that re-ranks no better than the student is reported (a warning, and ``teacher_check`` in the run's
summary and the model's manifest) — it cannot be distilled above the student.

Model selection never looks at a test split: a dev split carved from the training queries (by the
caller) is evaluated every ``eval_every`` steps with full-corpus retrieval, the best checkpoint is
kept, and training stops after ``patience`` evaluations without improvement. State is checkpointed
at every evaluation (model, optimiser, scheduler, RNG, step), written atomically, so a killed run
resumes where it was.

The saved encoder is a sentence-transformers folder plus ``query_encoder.json``, which names the
document encoder it is compatible with (the index's encoder description, fingerprint included);
``distilir_index``'s encoder check accepts exactly that pairing (see
:func:`distilir_index.encoders.check_encoder_compatible`).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from distilir.data.trec import sorted_ranking
from distilir.training._progress import library_progress_bars
from distilir.training.scales import NORMALIZATIONS, calibrate_margin_scale, normalize_per_query

__all__ = [
    "QUERY_ENCODER_MANIFEST",
    "FrozenIndexError",
    "QuerySideConfig",
    "free_query_bound",
    "full_corpus_infonce",
    "full_corpus_kl",
    "split_dev",
    "teacher_check",
    "train_query_encoder",
]

QUERY_ENCODER_MANIFEST = "query_encoder.json"


class FrozenIndexError(ValueError):
    """Inputs that cannot be trained on; the message says what to do."""


@dataclass
class QuerySideConfig:
    """Settings of a query-side run (see the module docstring for the losses)."""

    lr: float = 2e-5
    epochs: int = 1
    batch_size: int = 32
    max_length: int = 64
    warmup: float = 0.1
    weight_decay: float = 0.01
    student_temperature: float = 0.05
    teacher_temperature: float = 1.0
    normalization: str = "zscore"
    full_kl: float = 1.0
    list_kl: float = 0.0
    margin_mse: float = 0.0
    margin_scale: float | None = None
    infonce: float = 0.0
    false_negative_threshold: float = 0.9
    list_size: int | None = None
    eval_every: int = 50
    patience: int = 4
    eval_depth: int = 100
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise FrozenIndexError(
                f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )
        for name in ("lr", "student_temperature", "teacher_temperature"):
            if not getattr(self, name) > 0:
                raise FrozenIndexError(f"{name} must be > 0, got {getattr(self, name)}")
        if min(self.epochs, self.batch_size, self.max_length, self.eval_every, self.patience) < 1:
            raise FrozenIndexError("epochs, batch_size, max_length, eval_every and patience must be >= 1")
        weights = (self.full_kl, self.list_kl, self.margin_mse, self.infonce)
        if min(weights) < 0 or sum(weights) == 0:
            raise FrozenIndexError(f"loss weights must be >= 0 with at least one > 0, got {weights}")

    def hash(self) -> str:
        return sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def full_corpus_kl(
    full: torch.Tensor,
    rows: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    tau_s: float,
    tau_t: float,
) -> torch.Tensor:
    """``mean_q -sum_{d in C_q} p_t(d) log p_s(d)``: ``p_t = softmax(teacher / tau_t)`` over the valid
    candidates ``rows[q]`` (``mask``), ``p_s = softmax(full[q] / tau_s)`` over every corpus column."""
    log_ps = torch.log_softmax(full / tau_s, dim=1)
    p_t = torch.softmax(teacher.masked_fill(~mask, float("-inf")) / tau_t, dim=1)
    return -(p_t * torch.gather(log_ps, 1, rows)).sum(1).mean()


def full_corpus_infonce(
    full: torch.Tensor,
    rows: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    tau_s: float,
    threshold: float,
) -> torch.Tensor:
    """Cross-entropy of the teacher's top candidate (``rows[:, 0]``) against every corpus column, with
    the other candidates whose min-max normalised teacher score is ``>= threshold`` left out of the
    softmax (teacher-masked false negatives)."""
    mm = normalize_per_query(teacher, mask, "minmax")
    fn = mask & (mm >= threshold)
    fn[:, 0] = False
    masked = torch.zeros_like(full, dtype=torch.bool).scatter(1, rows, fn)
    logits = (full / tau_s).masked_fill(masked, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, rows[:, 0])


def _index_vectors(index_path: Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Document ids, vectors and the manifest of a saved dense index (read only)."""
    from distilir_index import read_manifest
    from distilir_index.dense import DenseIndex

    manifest = read_manifest(index_path)
    if manifest.get("kind") != "dense":
        raise FrozenIndexError(
            f"{index_path} is a {manifest.get('kind')!r} index; query-side training needs a dense index "
            "(build one with `distilir-index build --kind dense`)."
        )
    if not manifest.get("encoder"):
        raise FrozenIndexError(f"{index_path} records no encoder; it was built from raw vectors.")
    index = DenseIndex.load(index_path, load_encoder=False, mmap=True)
    vectors = index.vectors()
    ids = index.ids()
    return ids, np.ascontiguousarray(vectors, dtype=np.float32), manifest


def _lists(
    teacher: Mapping[str, Mapping[str, float]],
    queries: Mapping[str, str],
    row_of: Mapping[str, int],
    list_size: int | None,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per training query: candidate rows and teacher scores, teacher's best first."""
    out = []
    for qid in sorted(queries):
        scores = teacher.get(qid)
        if not scores:
            continue
        ranked = sorted_ranking({d: s for d, s in scores.items() if d in row_of})
        if list_size is not None:
            ranked = ranked[:list_size]
        if len(ranked) < 2:
            continue
        out.append(
            (qid, np.array([row_of[d] for d, _ in ranked]), np.array([s for _, s in ranked], np.float32))
        )
    return out


def _pad(
    lists: list[tuple[str, np.ndarray, np.ndarray]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, teacher, mask)`` ``[B, longest list]`` of :func:`_lists` entries; padding points at
    the list's first (teacher's best) row and is masked out of every loss."""
    n = max(len(r) for _, r, _ in lists)
    rows = torch.zeros(len(lists), n, dtype=torch.long)
    t = torch.zeros(len(lists), n)
    mask = torch.zeros(len(lists), n, dtype=torch.bool)
    for i, (_, r, s) in enumerate(lists):
        rows[i] = int(r[0])
        rows[i, : len(r)], t[i, : len(r)], mask[i, : len(r)] = torch.from_numpy(r), torch.from_numpy(s), True
    return rows, t, mask


def _encode(model: Any, texts: list[str], max_length: int, normalize: bool, grad: bool) -> torch.Tensor:
    enc = model.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    features = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.set_grad_enabled(grad):
        emb = model(features)["sentence_embedding"]
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb


def dev_ndcg(
    model: Any,
    docs: torch.Tensor,
    ids: list[str],
    dev: Mapping[str, str],
    qrels: Mapping,
    cfg: QuerySideConfig,
    normalize: bool,
    conventions: Any = None,
) -> float:
    """nDCG@10 of full-corpus retrieval for the dev queries (the selection metric)."""
    from distilir.evaluation import evaluate

    model.eval()
    qids = sorted(dev)
    rows = []
    for start in range(0, len(qids), 128):
        chunk = qids[start : start + 128]
        rows.append(_encode(model, [dev[q] for q in chunk], cfg.max_length, normalize, grad=False))
    scores = torch.cat(rows) @ docs.T
    top = torch.topk(scores, k=min(cfg.eval_depth, len(ids)), dim=1)
    run = {
        q: {ids[j]: float(s) for j, s in zip(top.indices[i].tolist(), top.values[i].tolist(), strict=True)}
        for i, q in enumerate(qids)
    }
    res = evaluate(run, {q: qrels[q] for q in qids}, ["nDCG@10"], conventions=conventions)
    model.train()
    return float(res.aggregate["nDCG@10"])


def teacher_check(
    model: Any,
    docs: torch.Tensor,
    row_of: Mapping[str, int],
    teacher: Mapping[str, Mapping[str, float]],
    dev: Mapping[str, str],
    qrels: Mapping,
    cfg: QuerySideConfig,
    normalize: bool,
    conventions: Any = None,
) -> dict[str, Any] | None:
    """The teacher's quality before training: nDCG@10 of the dev queries' teacher-scored lists in the
    teacher's order and in the base student's order (``None`` when no dev query has a scored list).
    A teacher that does not re-rank better than the student cannot be distilled above it."""
    from distilir.evaluation import evaluate
    from distilir.evaluation.diagnostics import rerank_run

    qids = sorted(q for q in dev if len([d for d in teacher.get(q, {}) if d in row_of]) >= 2)
    if not qids:
        return None
    model.eval()
    vecs = torch.cat(
        [
            _encode(model, [dev[q] for q in qids[i : i + 128]], cfg.max_length, normalize, grad=False)
            for i in range(0, len(qids), 128)
        ]
    )
    model.train()
    student = rerank_run(vecs.numpy(), qids, docs.numpy(), row_of, teacher)
    by_teacher = {q: {d: float(s) for d, s in teacher[q].items() if d in row_of} for q in qids}
    judged = {q: qrels[q] for q in qids}
    t = evaluate(by_teacher, judged, ["nDCG@10"], conventions=conventions).aggregate["nDCG@10"]
    s = evaluate(student, judged, ["nDCG@10"], conventions=conventions).aggregate["nDCG@10"]
    return {
        "queries": len(qids),
        "teacher_rerank_ndcg@10": round(t, 4),
        "student_rerank_ndcg@10": round(s, 4),
    }


def _save_atomic_dir(write, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def train_query_encoder(
    index_path: str | os.PathLike[str],
    queries: Mapping[str, str],
    teacher: Mapping[str, Mapping[str, float]],
    out: str | os.PathLike[str],
    *,
    dev_queries: Mapping[str, str] | None = None,
    dev_qrels: Mapping[str, Mapping[str, int]] | None = None,
    config: QuerySideConfig | None = None,
    conventions: Any = None,
    provenance: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a query encoder against the frozen vectors of the dense index at ``index_path``.

    Args:
        queries: ``{qid: text}`` training queries (collection and/or synthetic).
        teacher: ``{qid: {doc_id: score}}`` teacher scores of each query's candidates (a
            ``TeacherStore.to_run()``); documents not in the index are ignored.
        out: the run folder: ``model/`` (the selected encoder, with ``query_encoder.json``),
            ``checkpoint/`` (resume state), ``history.json``.
        dev_queries / dev_qrels: the dev split for model selection and early stopping (never a test
            split). Without them, the last step is kept.
        provenance: what produced the inputs (teacher store fingerprint, query stores, ...), written
            into the manifest.

    Returns:
        The run summary (also ``out/model/query_encoder.json``'s ``training`` section).
    """
    from distilir_index.models import resolve_model
    from sentence_transformers import SentenceTransformer

    cfg = config or QuerySideConfig()
    index_path, out = Path(index_path), Path(out)
    ids, vectors, manifest = _index_vectors(index_path)
    encoder = manifest["encoder"]
    normalize = bool(encoder.get("normalize", True))
    row_of = {d: i for i, d in enumerate(ids)}
    lists = _lists(teacher, queries, row_of, cfg.list_size)
    if not lists:
        raise FrozenIndexError(
            f"none of the {len(queries)} training queries has at least 2 teacher-scored candidates in the "
            f"index {index_path}; score candidates of these queries with `distilir teach` first."
        )
    if dev_queries and not dev_qrels:
        raise FrozenIndexError("dev_queries need dev_qrels (the judgments of the dev split)")
    if dev_queries and set(dev_queries) & set(queries):
        raise FrozenIndexError(
            f"{len(set(dev_queries) & set(queries))} dev queries are also training queries; carve the dev "
            "split out of the training queries (distilir.training.frozen_index.split_dev)."
        )
    source = (
        encoder.get("path") if encoder.get("path") and os.path.isdir(encoder["path"]) else encoder["name"]
    )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    with library_progress_bars(progress):  # transformers' own "Loading weights" bar
        model = SentenceTransformer(resolve_model(str(source)), device="cpu")
    if encoder.get("max_length"):
        model.max_seq_length = int(encoder["max_length"])
    docs = torch.from_numpy(vectors)

    steps_per_epoch = math.ceil(len(lists) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    from distilir.losses import ListwiseKLLoss, MarginMSELoss

    list_kl = ListwiseKLLoss(cfg.student_temperature, cfg.teacher_temperature)
    margin = MarginMSELoss("pairwise")

    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    state: dict[str, Any] = {
        "step": 0,
        "best": None,
        "best_step": None,
        "bad": 0,
        "history": [],
        "margin_scale": cfg.margin_scale,
        "seconds": 0.0,  # training time over every session of this run (a resumed run adds to it)
    }
    if (ckpt / "state.pt").is_file():
        saved = torch.load(ckpt / "state.pt", weights_only=False)
        if saved["config_hash"] != cfg.hash():
            raise FrozenIndexError(
                f"{out} holds a run with other settings (config {saved['config_hash']}, now {cfg.hash()}); "
                "use another --out, or the same settings to resume."
            )
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        torch.set_rng_state(saved["torch_rng"])
    model.train()

    def save_best() -> None:
        with library_progress_bars(progress):  # and its "Writing model shards" bar
            _save_atomic_dir(model.save, out / "best")

    def checkpoint() -> None:
        state["seconds"] = base_seconds + time.perf_counter() - t0

        def write(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            torch.save(
                {
                    "config_hash": cfg.hash(),
                    "model": model.state_dict(),
                    "optim": optim.state_dict(),
                    "sched": sched.state_dict(),
                    "state": state,
                    "torch_rng": torch.get_rng_state(),
                },
                tmp / "state.pt",
            )

        _save_atomic_dir(write, ckpt)

    def evaluate_dev() -> None:
        if not dev_queries:
            return
        value = dev_ndcg(model, docs, ids, dev_queries, dev_qrels, cfg, normalize, conventions)
        state["history"].append({"step": state["step"], "dev_ndcg@10": round(value, 4)})
        if state["best"] is None or value > state["best"]:
            state["best"], state["best_step"], state["bad"] = value, state["step"], 0
            save_best()
        else:
            state["bad"] += 1

    if state["step"] == 0 and dev_queries and not state["history"]:
        evaluate_dev()  # the base model's dev score: a run that never beats it keeps the base
        state["teacher_check"] = teacher_check(
            model, docs, row_of, teacher, dev_queries, dev_qrels, cfg, normalize, conventions
        )
        check = state["teacher_check"]
        if check and check["teacher_rerank_ndcg@10"] <= check["student_rerank_ndcg@10"]:
            warnings.warn(
                f"the teacher re-ranks the {check['queries']} dev queries' lists at nDCG@10 "
                f"{check['teacher_rerank_ndcg@10']:.4f}, no better than the base student "
                f"({check['student_rerank_ndcg@10']:.4f}): distilling it is unlikely to help; dev "
                "selection will keep the base unless a step beats it. Use a stronger teacher.",
                stacklevel=2,
            )
    t0, base_seconds = time.perf_counter(), state.get("seconds", 0.0)
    bar = tqdm(
        total=total, initial=state["step"], desc="query-side training", unit="step", disable=not progress
    )
    stopped = False
    while state["step"] < total and not stopped:
        epoch = state["step"] // steps_per_epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(lists))
        first = state["step"] - epoch * steps_per_epoch
        for b in range(first, steps_per_epoch):
            batch = [lists[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            rows, t, mask = _pad(batch)
            q = _encode(model, [queries[qid] for qid, _, _ in batch], cfg.max_length, normalize, grad=True)
            full = q @ docs.T  # [B, corpus]
            student = torch.gather(full, 1, rows)
            tn = normalize_per_query(t, mask, cfg.normalization)
            loss = torch.zeros(())
            parts = {}
            if cfg.full_kl:
                parts["full_kl"] = full_corpus_kl(
                    full, rows, tn, mask, cfg.student_temperature, cfg.teacher_temperature
                )
                loss = loss + cfg.full_kl * parts["full_kl"]
            if cfg.list_kl:
                parts["list_kl"] = list_kl(student, tn, mask)
                loss = loss + cfg.list_kl * parts["list_kl"]
            if cfg.margin_mse:
                if state["margin_scale"] is None:
                    state["margin_scale"] = calibrate_margin_scale(student.detach(), tn, mask)
                parts["margin_mse"] = margin(student, tn * state["margin_scale"], mask)
                loss = loss + cfg.margin_mse * parts["margin_mse"]
            if cfg.infonce:
                parts["infonce"] = full_corpus_infonce(
                    full, rows, t, mask, cfg.student_temperature, cfg.false_negative_threshold
                )
                loss = loss + cfg.infonce * parts["infonce"]
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if state["step"] % 10 == 0 or state["step"] == 1:
                state["history"].append(
                    {
                        "step": state["step"],
                        "loss": round(float(loss.detach()), 5),
                        **{k: round(float(v.detach()), 5) for k, v in parts.items()},
                    }
                )
            if state["step"] % cfg.eval_every == 0 or state["step"] == total:
                evaluate_dev()
                checkpoint()
                if dev_queries and state["bad"] >= cfg.patience:
                    stopped = True
                    break
    bar.close()
    state["seconds"] = seconds = base_seconds + time.perf_counter() - t0
    if not dev_queries:
        save_best()
        state["best_step"] = state["step"]
    summary = {
        "config": asdict(cfg),
        "config_hash": cfg.hash(),
        "train_queries": len(lists),
        "steps": state["step"],
        "steps_planned": total,
        "early_stopped": stopped,
        "selected_step": state["best_step"],
        "dev_ndcg@10": None if state["best"] is None else round(state["best"], 4),
        "dev_queries": len(dev_queries or {}),
        "margin_scale": state["margin_scale"],
        "teacher_check": state.get("teacher_check"),
        "seconds": round(seconds, 1),
        "history": state["history"],
    }
    qe_manifest = {
        "kind": "query-encoder",
        "document_encoder": {
            k: encoder.get(k)
            for k in (
                "name",
                "fingerprint",
                "dimension",
                "pooling",
                "normalize",
                "max_length",
                "query_prompt",
                "document_prompt",
            )
        },
        "index": {"path": str(index_path.resolve()), "corpus": manifest.get("corpus")},
        "training": {k: v for k, v in summary.items() if k != "history"},
        "inputs": dict(provenance or {}),
    }

    def write_model(tmp: Path) -> None:
        shutil.copytree(out / "best", tmp)
        (tmp / QUERY_ENCODER_MANIFEST).write_text(
            json.dumps(qe_manifest, indent=2, sort_keys=True, default=str)
        )

    _save_atomic_dir(write_model, out / "model")
    (out / "history.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def free_query_bound(
    init: np.ndarray,
    docs: np.ndarray,
    ids: list[str],
    teacher: Mapping[str, Mapping[str, float]],
    qids: list[str],
    cfg: QuerySideConfig | None = None,
    steps: int = 200,
    lr: float = 0.01,
) -> dict[str, np.ndarray]:
    """What a query-side student could reach at best on the frozen documents: one free, unit-norm
    vector per query of ``qids`` (``init``: the base encoder's vectors, in that order), fitted by
    Adam to the ``full_kl`` loss of its teacher list. Retrieval with the returned ``{qid: vector}``
    (queries with at least two scored candidates in ``ids``) measures whether the index's space can
    express the teacher's ranking at all; the gap between it and a trained encoder is what
    generalisation from the training queries leaves on the table (a diagnostic, never a model)."""
    cfg = cfg or QuerySideConfig()
    row_of = {d: i for i, d in enumerate(ids)}
    lists = _lists(teacher, dict.fromkeys(qids, ""), row_of, cfg.list_size)
    if not lists:
        return {}
    rows, t, mask = _pad(lists)
    t = normalize_per_query(t, mask, cfg.normalization)
    d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    position = {q: i for i, q in enumerate(qids)}
    start = np.asarray(init, dtype=np.float32)[[position[q] for q, _, _ in lists]]
    q = torch.from_numpy(start.copy()).requires_grad_(True)
    optim = torch.optim.Adam([q], lr=lr)
    for _ in range(steps):
        qn = torch.nn.functional.normalize(q, dim=-1)
        loss = full_corpus_kl(qn @ d.T, rows, t, mask, cfg.student_temperature, cfg.teacher_temperature)
        optim.zero_grad()
        loss.backward()
        optim.step()
    fitted = torch.nn.functional.normalize(q.detach(), dim=-1).numpy()
    return {qid: fitted[i] for i, (qid, _, _) in enumerate(lists)}


def split_dev(
    qids: list[str], fraction: float = 0.1, seed: int = 0, minimum: int = 20
) -> tuple[list[str], list[str]]:
    """A seeded dev split carved from training query ids: ``(train, dev)``, both sorted."""
    if not 0 < fraction < 1:
        raise FrozenIndexError(f"dev fraction must be in (0, 1), got {fraction}")
    ordered = sorted(qids)
    perm = np.random.default_rng([seed, 2024]).permutation(len(ordered))
    n_dev = max(minimum, int(round(fraction * len(ordered))))
    if n_dev >= len(ordered):
        raise FrozenIndexError(f"{len(ordered)} queries are too few for a dev split of {n_dev}")
    dev = sorted(ordered[i] for i in perm[:n_dev])
    train = sorted(ordered[i] for i in perm[n_dev:])
    return train, dev
