"""Why a distilled student got better or worse: agreement with its teacher and the geometry of its
space, measured before and after training.

* :func:`list_agreement`: on each query's teacher-scored list, the Kendall tau (b) between the
  student's and the teacher's scores, and whether both put the same document first.
* :func:`rerank_run`: the student's scores restricted to those lists, as a run (to evaluate its
  re-ranking quality with qrels, independent of full-corpus retrieval).
* :func:`geometry`: mean cosine between random document pairs (how crowded the space is), between a
  query and random documents, between a query and its nearest document, and the mean margin
  between them (how far a query's best document stands out of the crowd).

Written here because no retrieval library reports these; Kendall's tau comes from scipy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["geometry", "list_agreement", "rerank_run"]


def list_agreement(
    student: Mapping[str, Mapping[str, float]], teacher: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Mean Kendall tau-b and top-1 agreement over the queries both runs score (on the teacher's
    documents; a query with fewer than 2 shared documents is skipped)."""
    from scipy.stats import kendalltau

    taus, top1 = [], []
    for qid, t in teacher.items():
        s = student.get(qid)
        if not s:
            continue
        docs = [d for d in t if d in s]
        if len(docs) < 2:
            continue
        tv = np.array([t[d] for d in docs])
        sv = np.array([s[d] for d in docs])
        tau = kendalltau(sv, tv).statistic
        if np.isfinite(tau):
            taus.append(float(tau))
        top1.append(docs[int(np.argmax(sv))] == docs[int(np.argmax(tv))])
    return {
        "kendall_tau": float(np.mean(taus)) if taus else float("nan"),
        "top1_agreement": float(np.mean(top1)) if top1 else float("nan"),
        "queries": len(top1),
    }


def rerank_run(
    query_vectors: np.ndarray,
    qids: list[str],
    doc_vectors: np.ndarray,
    row_of: Mapping[str, int],
    lists: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """``{qid: {doc: q . d}}`` for the documents of each query's list (dot products of the vectors)."""
    out = {}
    for i, qid in enumerate(qids):
        docs = [d for d in lists.get(qid, {}) if d in row_of]
        if docs:
            scores = doc_vectors[[row_of[d] for d in docs]] @ query_vectors[i]
            out[qid] = {d: float(v) for d, v in zip(docs, scores, strict=True)}
    return out


def geometry(
    doc_vectors: np.ndarray, query_vectors: np.ndarray, pairs: int = 20000, seed: int = 0
) -> dict[str, float]:
    """Cosine statistics of a space (vectors are L2-normalised here first)."""
    rng = np.random.default_rng(seed)
    d = doc_vectors / np.linalg.norm(doc_vectors, axis=1, keepdims=True).clip(1e-12)
    q = query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True).clip(1e-12)
    a, b = rng.integers(0, len(d), pairs), rng.integers(0, len(d), pairs)
    keep = a != b
    doc_doc = float(np.mean(np.sum(d[a[keep]] * d[b[keep]], axis=1)))
    sims = q @ d.T
    rand = sims[np.arange(len(q))[:, None], rng.integers(0, len(d), (len(q), 50))]
    top = sims.max(axis=1)
    return {
        "doc_doc_cosine": round(doc_doc, 4),
        "query_random_doc_cosine": round(float(rand.mean()), 4),
        "query_top1_cosine": round(float(top.mean()), 4),
        "top1_minus_random": round(float((top - rand.mean(axis=1)).mean()), 4),
    }
