"""Evaluation of the student on a held-out split while it trains (and once at the end).

Two modes, both cheap enough to run every few hundred steps on a CPU:

* ``rerank``: each evaluated query's first-stage candidates (a run file, or BM25 top ``depth`` from
  :func:`distilir.candidates.retrieve`) are scored by the student, and the reranked lists are
  evaluated. Works for every student kind (the cross-encoder can only do this).
* ``retrieve``: the corpus — or the judged documents of the evaluated queries plus
  ``corpus_sample`` other documents drawn with the seed — is encoded with the student and searched
  exactly (a flat inner-product search: one matrix product, the same result as a FAISS
  ``IndexFlatIP``; dense and SPLADE students). On a slice the numbers are higher than on the full
  corpus, so compare them only with each other.

Metrics come from :func:`distilir.evaluation.evaluate` (ir_measures) with the collection's conventions
(:func:`distilir.conventions.conventions_for`: ArguAna drops self-hits, TREC DL counts grade >= 2).
Each evaluated list holds ``EvalConfig.list_depth`` documents (``k``, and at most ``depth`` when
reranking); a measure cut off deeper than that would repeat the measure at that depth under a wrong
name (R@100 of 20 reranked candidates is their R@20), so such measures are dropped with a warning
(the headline ``metric`` is refused by the config). Evaluating on queries the student was trained
on is warned about too: those numbers overstate held-out quality.
The student is put in eval mode for the pass and back into train mode afterwards; the global random
generators are saved and restored around it, so evaluating never changes the training trajectory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from distilir_index.registry import normalize_kind
from tqdm.auto import tqdm

from distilir.data.trec import sorted_ranking
from distilir.students.base import EncoderStudent
from distilir.training._student import student_module
from distilir.training.checkpoint import capture_rng_state, restore_rng_state
from distilir.training.config import EvalConfig
from distilir.types import Run

__all__ = ["DevEvaluator", "encode_texts", "rerank_scores"]


class DevEvaluator:
    """Evaluates a student on ``config.dataset`` / ``config.split``; call it with the student.

    Returns ``{measure: value}`` with the headline ``config.metric`` first, then RR@10 and R@k where
    they differ from it and fit in the evaluated lists (:meth:`EvalConfig.reported_measures`). The
    dataset, qrels and candidates are loaded by :meth:`prepare` or on the first call.

    ``training_queries`` are the ids of the training lists; ``training_dataset`` the collection they
    come from. When it is the evaluated one, evaluated queries among them are warned about (or left
    out, with ``exclude_training_queries``).
    """

    def __init__(
        self,
        config: EvalConfig,
        *,
        seed: int = 0,
        data_dir: str | None = None,
        progress: bool = False,
        student_kind: str | None = None,
        training_queries: Iterable[str] = (),
        training_dataset: str | None = None,
    ) -> None:
        if config.dataset is None:
            raise ValueError("DevEvaluator needs eval.dataset; set it, or leave evaluation off.")
        if (
            config.mode == "retrieve"
            and student_kind is not None
            and normalize_kind(student_kind) == "cross-encoder"
        ):
            raise ValueError(
                "eval.mode 'retrieve' needs vectors, which a cross-encoder student does not produce; "
                "use eval.mode: rerank for cross-encoders."
            )
        self.config = config
        self.seed = seed
        self.data_dir = data_dir
        self.progress = progress
        self.training_queries = frozenset(training_queries)
        self.training_dataset = training_dataset
        if config.exclude_training_queries and not self.training_queries:
            raise ValueError("eval.exclude_training_queries is set but no training query ids were given")
        self.measures, dropped = config.reported_measures()
        if dropped:
            warnings.warn(
                f"eval: not reporting {', '.join(dropped)}: each evaluated list holds {config.list_depth} "
                f"documents (eval.k {config.k}"
                + (f", eval.depth {config.depth}" if config.mode == "rerank" else "")
                + f"), so a deeper cutoff only repeats the value at {config.list_depth}.",
                stacklevel=2,
            )
        self.training_overlap: int | None = None  # evaluated queries that are training queries (prepare)
        self._ready = False

    # ------------------------------------------------------------------ setup

    def prepare(self) -> None:
        """Load the dataset, qrels and candidates now (the trainer calls it before its first step, so
        a bad evaluation setting or a train/eval overlap shows before training, not after it)."""
        if not self._ready:
            self._setup()

    def _setup(self) -> None:
        from distilir.conventions import conventions_for
        from distilir.data import load_dataset

        cfg = self.config
        self.dataset = load_dataset(cfg.dataset, data_dir=self.data_dir)
        self.conventions = conventions_for(self.dataset.name)
        qrels = self.dataset.qrels(cfg.split)
        queries = self.dataset.queries(cfg.split)
        qids = sorted(q for q in qrels if q in queries)
        if cfg.exclude_training_queries:
            qids = [q for q in qids if q not in self.training_queries]
        self._file_run: Run | None = None
        if cfg.mode == "rerank" and cfg.candidates:
            # a candidates file may cover a slice of the split on purpose: evaluate the judged queries it has
            from distilir.candidates import read_candidates

            self._file_run, _ = read_candidates(cfg.candidates)
            qids = [q for q in qids if q in self._file_run]
        if not qids:
            raise ValueError(
                f"{cfg.dataset} split {cfg.split!r} has no judged queries to evaluate on"
                + (f" among those of {cfg.candidates}" if self._file_run is not None else "")
                + "."
            )
        if cfg.max_queries is not None and cfg.max_queries < len(qids):
            rng = np.random.default_rng([self.seed, 11])
            qids = sorted(rng.choice(qids, size=cfg.max_queries, replace=False).tolist())
        self._check_overlap(qids)
        self.qids = qids
        self.qrels = {q: qrels[q] for q in qids}
        self.queries = {q: queries[q].text for q in qids}
        if cfg.mode == "rerank":
            self._setup_rerank()
        else:
            self._setup_retrieve()
        self._ready = True

    def _check_overlap(self, qids: Sequence[str]) -> None:
        """Warn when evaluated queries of this collection are training queries (not left out)."""
        from distilir.data import load_dataset

        if not self.training_queries or self.training_dataset is None:
            return
        same = self.training_dataset == self.config.dataset or (
            load_dataset(self.training_dataset, data_dir=self.data_dir).name == self.dataset.name
        )
        if not same:
            return
        overlap = sorted(self.training_queries.intersection(qids))
        self.training_overlap = len(overlap)
        if overlap:
            cfg = self.config
            warnings.warn(
                f"eval: {len(overlap)} of the {len(qids)} evaluated queries of {cfg.dataset} split "
                f"{cfg.split!r} {'is a training query' if len(overlap) == 1 else 'are training queries'} "
                f"(e.g. {', '.join(overlap[:3])}): the student was "
                "trained on their teacher lists, so its scores there overstate held-out quality and are "
                "no ground for choosing a model. Evaluate on another split, or set "
                "eval.exclude_training_queries: true.",
                stacklevel=3,
            )

    def _setup_rerank(self) -> None:
        cfg = self.config
        if self._file_run is not None:
            run = self._file_run
        else:
            from distilir.candidates import FirstStageConfig, retrieve

            run = retrieve(
                self.dataset,
                cfg.split,
                FirstStageConfig(retriever="bm25"),
                k=cfg.depth,
                queries=self.qids,
                drop_self=self.conventions.ignore_identical_ids,
            )
        corpus = self.dataset.corpus()
        self.candidates: dict[str, list[str]] = {}
        for qid in self.qids:
            ranked = sorted_ranking(run.get(qid, {}))[: cfg.depth]
            self.candidates[qid] = [d for d, _ in ranked if d in corpus]
        self.doc_text = {d: corpus[d].full_text for docs in self.candidates.values() for d in docs}

    def _setup_retrieve(self) -> None:
        cfg = self.config
        corpus = self.dataset.corpus()
        ids = sorted(corpus)
        if cfg.corpus_sample is not None:
            judged = {d for q in self.qids for d in self.qrels[q] if d in corpus}
            others = [d for d in ids if d not in judged]
            rng = np.random.default_rng([self.seed, 13])
            take = min(cfg.corpus_sample, len(others))
            sample = rng.choice(len(others), size=take, replace=False) if take else []
            ids = sorted(judged | {others[i] for i in sample})
        self.doc_ids = ids
        self.doc_texts = [corpus[d].full_text for d in ids]

    # ------------------------------------------------------------------ evaluation

    def run(self, student: Any) -> Run:
        """The student's run over the evaluated queries (eval mode, no gradients, RNG untouched)."""
        self.prepare()
        module = student_module(student)
        was_training = module.training
        rng = capture_rng_state()
        module.eval()
        try:
            with torch.no_grad():
                if self.config.mode == "rerank":
                    return self._rerank(student)
                return self._retrieve(student)
        finally:
            module.train(was_training)
            restore_rng_state(rng)

    def __call__(self, student: Any) -> dict[str, float]:
        from distilir.evaluation import evaluate

        run = self.run(student)
        result = evaluate(run, self.qrels, measures=self.measures, conventions=self.conventions)
        return {m: float(result.aggregate[m]) for m in self.measures}

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        out = {
            "dataset": cfg.dataset,
            "split": cfg.split,
            "mode": cfg.mode,
            "measures": self.measures,
            "queries": len(self.qids) if self._ready else None,
            "excluded_training_queries": cfg.exclude_training_queries,
            "training_queries_evaluated": self.training_overlap,
        }
        if cfg.mode == "rerank":
            out.update(candidates=cfg.candidates or f"bm25 top {cfg.depth}")
        else:
            out.update(documents=len(self.doc_ids) if self._ready else None, corpus_sample=cfg.corpus_sample)
        return out

    def _rerank(self, student: Any) -> Run:
        run: Run = {}
        for qid in tqdm(self.qids, desc="eval rerank", disable=not self.progress, leave=False):
            docs = self.candidates[qid]
            if not docs:
                run[qid] = {}
                continue
            texts = [self.doc_text[d] for d in docs]
            scores = rerank_scores(student, self.queries[qid], texts, self.config.batch_size)
            run[qid] = dict(sorted_ranking(dict(zip(docs, scores, strict=True)))[: self.config.k])
        return run

    def _retrieve(self, student: Any) -> Run:
        cfg = self.config
        docs = encode_texts(student, self.doc_texts, "document", cfg.batch_size, self.progress)
        queries = encode_texts(student, [self.queries[q] for q in self.qids], "query", cfg.batch_size, False)
        k = min(cfg.k + (1 if self.conventions.ignore_identical_ids else 0), len(self.doc_ids))
        run: Run = {}
        for start in range(0, len(self.qids), 256):
            rows = torch.arange(start, min(start + 256, len(self.qids)))
            q = queries.index_select(0, rows).to_dense()  # sparse (SPLADE) queries cannot be sliced
            # exact inner-product search: [M, b] for sparse documents, [b, M] for dense ones
            sims = torch.sparse.mm(docs, q.T).T if docs.is_sparse else q @ docs.T
            values, idx = torch.topk(sims, k, dim=1)
            for row, qid in enumerate(self.qids[start : start + 256]):
                run[qid] = {
                    self.doc_ids[j]: float(v)
                    for j, v in zip(idx[row].tolist(), values[row].tolist(), strict=True)
                }
        return run


def rerank_scores(student: Any, query: str, docs: Sequence[str], batch_size: int) -> list[float]:
    """The student's scores of ``docs`` for one query, ``batch_size`` documents per forward pass."""
    out: list[float] = []
    for start in range(0, len(docs), batch_size):
        chunk = list(docs[start : start + batch_size])
        scores = student.score([query], [chunk])
        if not isinstance(scores, torch.Tensor):  # (scores, regulariser) or an output object
            scores = scores[0] if isinstance(scores, tuple) else scores.scores
        out.extend(scores.detach().float().reshape(-1).cpu().tolist())
    return out


def encode_texts(
    student: Any, texts: Sequence[str], role: str, batch_size: int, progress: bool
) -> torch.Tensor:
    """Vectors [n, dim] (dense) or a sparse COO tensor [n, vocab] of ``texts`` as queries or documents,
    ``batch_size`` texts per forward pass of the student's own ``encode_queries`` / ``encode_documents``
    (the same forward pass it trains with). Call under ``torch.no_grad()``."""
    texts = list(texts)
    if not isinstance(student, EncoderStudent):
        raise ValueError(
            f"{type(student).__name__} cannot encode texts on its own (no encode_queries / "
            "encode_documents); "
            "evaluate it with eval.mode: rerank."
        )
    encode = student.encode_queries if role == "query" else student.encode_documents
    parts = []
    for start in tqdm(
        range(0, len(texts), batch_size), desc=f"eval encode {role}s", disable=not progress, leave=False
    ):
        vectors = encode(texts[start : start + batch_size]).detach().float().cpu()
        parts.append(vectors.to_sparse() if _mostly_zero(vectors) else vectors)
    if any(p.is_sparse for p in parts):
        return torch.cat([p if p.is_sparse else p.to_sparse() for p in parts]).coalesce()
    return torch.cat(parts)


def _mostly_zero(x: torch.Tensor) -> bool:
    """SPLADE vectors (vocabulary-sized, > 95% zeros) are kept sparse to bound memory."""
    return x.is_sparse or (x.dim() == 2 and x.shape[1] > 4096 and float((x == 0).float().mean()) > 0.95)
