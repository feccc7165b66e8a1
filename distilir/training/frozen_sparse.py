"""Query-side distillation on a frozen *sparse* index: a SPLADE query encoder trained against fixed,
top-k pruned document vectors.

The sparse counterpart of :mod:`distilir.training.frozen_index`. The document matrix ``D`` (``N x V``
term weights) is read once from a saved ``distilir_index`` sparse index (its files are only read),
optionally pruned to each document's ``document_top_k`` largest weights, and never changes. Only the
query side of the SPLADE model is trained: a query's vector ``q = max_t log(1 + relu(logits_t))``
(``V`` terms, with gradient) scores every document at once, ``s(q, d) = q . D[d]`` — one sparse-dense
product :func:`sparse_scores` — so every corpus document is a negative, as in the dense recipe, and the
same losses apply (:func:`~distilir.training.frozen_index.full_corpus_kl`,
:func:`~distilir.training.frozen_index.full_corpus_infonce`; see that module for the formulas). SPLADE
scores are unnormalised dot products (tens, not cosines), hence ``student_temperature = 1``.

An optional FLOPS penalty (Paria et al., 2020) keeps query vectors sparse:
``flops * sum_j (mean_{q in batch} q_j)^2``.

Model selection never looks at a test split: dev nDCG@10 of full-corpus exact retrieval every
``eval_every`` steps, the best step kept (the base model counts as step 0), early stop after
``patience`` evaluations without improvement. Unlike the dense trainer this one keeps no resume
checkpoint (runs are minutes long).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from distilir.training.frozen_index import (
    FrozenIndexError,
    QuerySideConfig,
    _lists,
    _pad,
    full_corpus_infonce,
    full_corpus_kl,
)
from distilir.training.scales import normalize_per_query

__all__ = [
    "SparseQuerySideConfig",
    "encode_sparse_queries",
    "flops_penalty",
    "load_document_matrix",
    "prune_top_k",
    "sparse_retrieve",
    "sparse_scores",
    "to_torch_sparse",
    "train_sparse_query_encoder",
]


@dataclass
class SparseQuerySideConfig(QuerySideConfig):
    """:class:`~distilir.training.frozen_index.QuerySideConfig` for a sparse student, plus ``flops``
    (weight of the FLOPS penalty on query vectors; 0 = none). Default ``student_temperature`` 1.0:
    SPLADE scores are raw dot products."""

    student_temperature: float = 1.0
    flops: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flops < 0:
            raise FrozenIndexError(f"flops must be >= 0, got {self.flops}")


def prune_top_k(matrix: sp.csr_matrix, k: int | None) -> sp.csr_matrix:
    """Each row of ``matrix`` reduced to its ``k`` largest weights (ties: the lower column first);
    ``None`` returns a copy. Rows with ``<= k`` non-zeros are unchanged."""
    if k is None:
        return matrix.copy()
    if isinstance(k, bool) or int(k) < 1:
        raise FrozenIndexError(f"top-k must be a positive number of terms per document, got {k!r}")
    m = matrix.tocsr(copy=True)
    m.sort_indices()
    for i in range(m.shape[0]):
        lo, hi = m.indptr[i], m.indptr[i + 1]
        if hi - lo > k:
            row = m.data[lo:hi]
            drop = np.argsort(-row, kind="stable")[k:]
            row[drop] = 0.0
    m.eliminate_zeros()
    return m


def to_torch_sparse(matrix: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR ``[N, V]`` matrix as a coalesced torch sparse COO float32 tensor."""
    coo = matrix.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=True
    ).coalesce()


def sparse_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """``queries[B, V] @ documents[N, V]^T -> [B, N]``; ``documents`` a torch sparse tensor, gradient
    flows into ``queries``."""
    if queries.shape[1] != documents.shape[1]:
        raise FrozenIndexError(
            f"query vectors have {queries.shape[1]} terms, documents {documents.shape[1]}; the query "
            "encoder must share the index's vocabulary"
        )
    return torch.sparse.mm(documents, queries.T).T


def flops_penalty(queries: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser ``sum_j (mean_i |q_ij|)^2`` (Paria et al., 2020)."""
    return (queries.abs().mean(0) ** 2).sum()


def encode_sparse_queries(model: Any, texts: list[str], max_length: int, grad: bool) -> torch.Tensor:
    """SPLADE vectors ``[len(texts), V]`` of a sentence-transformers ``SparseEncoder`` (dense tensor)."""
    enc = model.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    features = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.set_grad_enabled(grad):
        return model(features)["sentence_embedding"]


def sparse_retrieve(
    model: Any, documents: torch.Tensor, ids: list[str], queries: Mapping[str, str], max_length: int, k: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Exact full-corpus top-``k`` run of ``queries`` and their mean number of non-zero query terms."""
    was = model.training
    model.eval()
    qids = sorted(queries)
    run: dict[str, dict[str, float]] = {}
    nnz = 0
    for start in range(0, len(qids), 64):
        chunk = qids[start : start + 64]
        q = encode_sparse_queries(model, [queries[x] for x in chunk], max_length, grad=False)
        nnz += int((q > 0).sum())
        top = torch.topk(sparse_scores(q, documents), k=min(k, len(ids)), dim=1)
        for i, qid in enumerate(chunk):
            run[qid] = {
                ids[j]: float(s) for j, s in zip(top.indices[i].tolist(), top.values[i].tolist(), strict=True)
            }
    model.train(was)
    return run, nnz / max(1, len(qids))


def load_document_matrix(
    index_path: str | os.PathLike[str], vocabulary: list[str]
) -> tuple[list[str], sp.csr_matrix]:
    """Document ids and the ``[N, len(vocabulary)]`` weights of a saved sparse index (read only),
    columns in the query encoder's ``vocabulary`` order (index terms the encoder lacks are dropped)."""
    from distilir_index.sparse import SparseIndex

    index = SparseIndex.load(index_path, load_encoder=False)
    matrix = index.document_matrix()
    ids = index.document_ids()
    if any(i is None for i in ids):
        raise FrozenIndexError(f"{index_path} holds deleted positions; compact and save it first")
    terms = index.vocabulary
    if terms[: len(vocabulary)] == list(vocabulary):
        out = matrix[:, : len(vocabulary)]
    else:
        col = {t: j for j, t in enumerate(vocabulary)}
        mapping = np.array([col.get(t, -1) for t in terms])
        coo = matrix.tocoo()
        keep = mapping[coo.col] >= 0
        out = sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], mapping[coo.col[keep]])),
            shape=(matrix.shape[0], len(vocabulary)),
        )
    return [str(i) for i in ids], sp.csr_matrix(out, dtype=np.float32)


def train_sparse_query_encoder(
    model: Any,
    ids: list[str],
    documents: sp.csr_matrix,
    queries: Mapping[str, str],
    teacher: Mapping[str, Mapping[str, float]],
    out: str | os.PathLike[str],
    *,
    dev_queries: Mapping[str, str] | None = None,
    dev_qrels: Mapping[str, Mapping[str, int]] | None = None,
    config: SparseQuerySideConfig | None = None,
    conventions: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` (a sentence-transformers ``SparseEncoder``, changed in place and left holding the
    selected weights) against the frozen ``documents`` (``[len(ids), V]``, e.g. from
    :func:`load_document_matrix` then :func:`prune_top_k`).

    Args:
        queries / teacher: ``{qid: text}`` training queries and ``{qid: {doc_id: score}}`` teacher
            scores of their candidates (documents not in ``ids`` are ignored).
        out: the run folder: ``model/`` (the selected encoder) and ``history.json``.
        dev_queries / dev_qrels: the dev split for selection (never a test split).

    Returns:
        The run summary (also ``out/history.json``): dev curve, selected step, query term counts.
    """
    from distilir.evaluation import evaluate

    cfg = config or SparseQuerySideConfig()
    out = Path(out)
    row_of = {d: i for i, d in enumerate(ids)}
    lists = _lists(teacher, queries, row_of, cfg.list_size)
    if not lists:
        raise FrozenIndexError(
            f"none of the {len(queries)} training queries has at least 2 teacher-scored candidates "
            "among the documents"
        )
    if dev_queries and not dev_qrels:
        raise FrozenIndexError("dev_queries need dev_qrels (the judgments of the dev split)")
    if dev_queries and set(dev_queries) & set(queries):
        raise FrozenIndexError(
            "dev queries are also training queries; carve the dev split out with split_dev"
        )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    docs = to_torch_sparse(documents)
    steps_per_epoch = math.ceil(len(lists) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"value": None, "step": None, "state": None, "bad": 0}

    def evaluate_dev(step: int) -> None:
        if not dev_queries:
            return
        run, qterms = sparse_retrieve(model, docs, ids, dev_queries, cfg.max_length, cfg.eval_depth)
        value = float(
            evaluate(run, {q: dev_qrels[q] for q in run}, ["nDCG@10"], conventions=conventions).aggregate[
                "nDCG@10"
            ]
        )
        history.append({"step": step, "dev_ndcg@10": round(value, 4), "dev_query_terms": round(qterms, 1)})
        if progress:
            print(f"step {step}: dev nDCG@10 {value:.4f}, {qterms:.1f} terms per dev query", flush=True)
        if best["value"] is None or value > best["value"]:
            best.update(value=value, step=step, state=copy.deepcopy(model.state_dict()), bad=0)
        else:
            best["bad"] += 1

    model.train()
    evaluate_dev(0)  # the base: a run that never beats it keeps the base
    t0 = time.perf_counter()
    step, stopped = 0, False
    while step < total and not stopped:
        epoch = step // steps_per_epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(lists))
        for b in range(steps_per_epoch):
            batch = [lists[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            rows, t, mask = _pad(batch)
            q = encode_sparse_queries(model, [queries[qid] for qid, _, _ in batch], cfg.max_length, grad=True)
            full = sparse_scores(q, docs)
            tn = normalize_per_query(t, mask, cfg.normalization)
            parts: dict[str, torch.Tensor] = {}
            if cfg.full_kl:
                parts["full_kl"] = cfg.full_kl * full_corpus_kl(
                    full, rows, tn, mask, cfg.student_temperature, cfg.teacher_temperature
                )
            if cfg.infonce:
                parts["infonce"] = cfg.infonce * full_corpus_infonce(
                    full, rows, t, mask, cfg.student_temperature, cfg.false_negative_threshold
                )
            if cfg.flops:
                parts["flops"] = cfg.flops * flops_penalty(q)
            if not parts:
                raise FrozenIndexError("the sparse trainer supports full_kl, infonce and flops weights only")
            loss = sum(parts.values())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            step += 1
            if step % 10 == 0 or step == 1:
                history.append(
                    {
                        "step": step,
                        "loss": round(float(loss.detach()), 5),
                        "batch_query_terms": round(float((q.detach() > 0).sum(1).float().mean()), 1),
                        **{k: round(float(v.detach()), 5) for k, v in parts.items()},
                    }
                )
            if step % cfg.eval_every == 0 or step == total:
                evaluate_dev(step)
                if dev_queries and best["bad"] >= cfg.patience:
                    stopped = True
                    break
            if step >= total:
                break
    seconds = time.perf_counter() - t0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["step"] = step
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "model"))
    summary = {
        "config": asdict(cfg),
        "config_hash": cfg.hash(),
        "train_queries": len(lists),
        "documents": len(ids),
        "document_terms": round(documents.nnz / max(1, documents.shape[0]), 1),
        "steps": step,
        "steps_planned": total,
        "early_stopped": stopped,
        "selected_step": best["step"],
        "dev_ndcg@10": None if best["value"] is None else round(best["value"], 4),
        "dev_queries": len(dev_queries or {}),
        "seconds": round(seconds, 1),
        "history": history,
    }
    (out / "history.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
