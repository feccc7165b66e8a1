"""Distill-VQ: IVF centroids and PQ codebooks learned from the float index's own relevance.

FAISS trains IVF-PQ to reconstruct vectors (k-means on the vectors, then k-means on the residuals per
sub-space), so its error is spread evenly over every direction, including the ones no query looks
along. Distill-VQ (Xiao et al., SIGIR 2022) instead trains the quantiser so that the *scores* of the
compressed vectors rank documents the way the float vectors do, for the queries the index serves:

    teacher  t(q, d) = <q, x_d>                               (the float index, exact)
    student  s(q, d) = <q, c_{a(d)}> + sum_j <q_j, P_j[code_j(d)]>   (what IndexIVFPQ scores)
    loss     = KL(softmax(t / tau) || softmax(s / tau))
             + ivf_weight * KL(softmax(t / tau) || softmax(<q, c_{a(d)}> / tau))

over each training query's candidates: its exact top ``candidates``, the current compressed index's
top ``ann_candidates`` (its mistakes) and ``random_negatives`` drawn from the corpus. The second term
trains the coarse centroids alone to rank lists the way their documents rank, so the probed lists
are the right ones. Assignments follow FAISS's own rules (a document's list: the centroid of largest
inner product; its code: the nearest codeword of each residual sub-vector), are held fixed within an
epoch (the chosen codewords get the gradient) and are recomputed after it; every epoch the codebooks
are exported into a real ``faiss.IndexIVFPQ`` and scored on dev queries (recall@10 against exact
search at the index's ``nprobe``), and the best epoch is kept -- epoch 0 is FAISS's own training, so
the result is never worse than FAISS on the dev queries.

The output is a plain trained (empty) ``faiss.IndexIVFPQ``: FAISS encodes and searches with it, no
custom search code; :meth:`distilir_index.dense.DenseIndex.use_quantizer` puts it under a DenseIndex
that saves and loads like any other. Written here because FAISS trains only for reconstruction and no
maintained library implements the distillation objective over FAISS's IVF-PQ layout.

Queries: held-out training queries of the collection (their vectors, from the index's encoder), or
``doc_queries`` documents used as pseudo-queries (their own vector excluded from their candidates)
when there are none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DistillVQConfig",
    "DistillVQResult",
    "assign",
    "build_ivfpq",
    "codebooks_of",
    "decode_scores",
    "distill_index",
    "distill_ivfpq",
    "faiss_ivfpq",
    "recall_at_k",
]


def _faiss() -> Any:
    import faiss

    return faiss


@dataclass(frozen=True)
class DistillVQConfig:
    """Settings of :func:`distill_ivfpq` (the IVF-PQ shape, the objective, the schedule). The defaults
    of lr, temperature and ivf_weight are the setting chosen on scifact's dev queries
    (benchmarks/reports/distill_vq.md)."""

    nlist: int = 128  #: IVF lists
    pq_m: int = 48  #: PQ sub-quantisers (bytes per vector at 8 bits); must divide the dimension
    pq_nbits: int = 8  #: bits per sub-quantiser code (2**nbits codewords each)
    nprobe: int = 16  #: lists probed when the dev recall is measured (the index is saved with it)
    epochs: int = 8  #: passes over the training queries
    lr: float = 3e-4  #: Adam's learning rate on centroids and codewords
    temperature: float = 0.05  #: tau of both softmaxes (cosine scores / tau)
    ivf_weight: float = 0.0  #: weight of the coarse-centroid term (0: centroids get only the main term)
    train_ivf: bool = True  #: learn the IVF centroids too (False: FAISS's k-means centroids stay)
    candidates: int = 100  #: exact top documents per query
    ann_candidates: int = 100  #: the current compressed index's top documents per query
    random_negatives: int = 100  #: random corpus documents per query
    batch_size: int = 64  #: queries per optimiser step
    seed: int = 0
    faiss_training_sample: int | None = None  #: vectors FAISS trains the initial quantiser on (None: all)

    def __post_init__(self) -> None:
        for name in ("nlist", "pq_m", "pq_nbits", "nprobe", "batch_size", "candidates"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DistillVQConfig.{name} must be a positive int, got {value!r}")
        for name in ("epochs", "ann_candidates", "random_negatives"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"DistillVQConfig.{name} must be an int >= 0, got {value!r}")
        if not 1 <= self.pq_nbits <= 16:
            raise ValueError(f"DistillVQConfig.pq_nbits must be in 1..16, got {self.pq_nbits}")
        if self.lr <= 0 or self.temperature <= 0 or self.ivf_weight < 0:
            raise ValueError(
                "DistillVQConfig needs lr > 0, temperature > 0 and ivf_weight >= 0, got "
                f"lr={self.lr}, temperature={self.temperature}, ivf_weight={self.ivf_weight}"
            )


@dataclass
class DistillVQResult:
    """What :func:`distill_ivfpq` returns: the chosen quantiser and the record of how it was chosen."""

    index: Any  #: a trained, empty faiss.IndexIVFPQ (inner product), nprobe set
    chosen_epoch: int  #: 0 = FAISS's own training was best on the dev queries
    history: list[dict[str, Any]] = field(default_factory=list)  #: per epoch: loss, dev recall@10, seconds
    config: DistillVQConfig | None = None

    def describe(self) -> dict[str, Any]:
        """The provenance a DenseIndex manifest records (``trained_by``)."""
        return {
            "method": "distill-vq",
            "config": asdict(self.config) if self.config is not None else None,
            "chosen_epoch": self.chosen_epoch,
            "history": self.history,
        }


# -- FAISS layout --------------------------------------------------------------------------------------
def faiss_ivfpq(x: np.ndarray, nlist: int, pq_m: int, pq_nbits: int, *, seed: int = 0) -> Any:
    """FAISS's own IVF-PQ (inner product, residuals, no polysemous training), trained on ``x``."""
    faiss = _faiss()
    d = x.shape[1]
    index = faiss.index_factory(d, f"IVF{nlist},PQ{pq_m}x{pq_nbits}np", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed  # index_factory returns the IndexIVFPQ itself (no downcast: that would not own it)
    index.pq.cp.seed = seed
    index.train(np.ascontiguousarray(x, dtype=np.float32))
    return index


def codebooks_of(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [nlist, d], codebooks [M, 2**nbits, d / M]) of a trained IndexIVFPQ."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    pq = index.pq
    codebooks = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    return np.ascontiguousarray(centroids, np.float32), np.ascontiguousarray(codebooks, np.float32)


def build_ivfpq(centroids: np.ndarray, codebooks: np.ndarray, *, nprobe: int = 16) -> Any:
    """A trained, empty ``faiss.IndexIVFPQ`` (inner product, by residual) with these parameters."""
    faiss = _faiss()
    nlist, d = centroids.shape
    m, ksub, dsub = codebooks.shape
    if m * dsub != d:
        raise ValueError(f"codebooks {codebooks.shape} do not tile {d}-d vectors")
    nbits = int(round(np.log2(ksub)))
    if 2**nbits != ksub:
        raise ValueError(f"codebooks hold {ksub} codewords each; a power of two is expected")
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(np.ascontiguousarray(centroids, np.float32))
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks, np.float32).ravel(), index.pq.centroids)
    index.do_polysemous_training = False
    index.is_trained = True
    index.nprobe = min(nprobe, nlist)
    return index


def assign(x: np.ndarray, centroids: np.ndarray, codebooks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's encoding rules: (list [n], codes [n, M]) -- the list of largest inner product, then
    for each sub-space the codeword nearest (L2) to the residual's sub-vector."""
    faiss = _faiss()
    x = np.ascontiguousarray(x, np.float32)
    q = faiss.IndexFlatIP(centroids.shape[1])
    q.add(np.ascontiguousarray(centroids, np.float32))
    lists = np.empty(len(x), np.int64)
    codes = np.empty((len(x), codebooks.shape[0]), np.int64)
    m, _, dsub = codebooks.shape
    for s in range(0, len(x), 65_536):
        part = x[s : s + 65_536]
        _, a = q.search(part, 1)
        lists[s : s + len(part)] = a[:, 0]
        residual = part - centroids[a[:, 0]]
        for j in range(m):
            sub = faiss.IndexFlatL2(dsub)
            sub.add(np.ascontiguousarray(codebooks[j]))
            _, c = sub.search(np.ascontiguousarray(residual[:, j * dsub : (j + 1) * dsub]), 1)
            codes[s : s + len(part), j] = c[:, 0]
    return lists, codes


def decode_scores(
    queries: np.ndarray,
    lists: np.ndarray,
    codes: np.ndarray,
    centroids: np.ndarray,
    codebooks: np.ndarray,
) -> np.ndarray:
    """Scores [nq, n] of every query against every encoded document, decoded by hand: the reference
    the exported FAISS index must reproduce (with nprobe = nlist)."""
    m, _, dsub = codebooks.shape
    recon = centroids[lists] + np.concatenate([codebooks[j][codes[:, j]] for j in range(m)], axis=1)
    return np.asarray(queries, np.float32) @ recon.T


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean |approx top-k ∩ exact top-k| / k."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) / k if hits else 0.0


def _exact_top(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    faiss = _faiss()
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return flat.search(np.ascontiguousarray(queries, np.float32), k)[1]


def _search(index: Any, queries: np.ndarray, k: int) -> np.ndarray:
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1]


# -- training ------------------------------------------------------------------------------------------
def distill_ivfpq(
    vectors: np.ndarray,
    queries: np.ndarray,
    dev_queries: np.ndarray,
    config: DistillVQConfig | None = None,
    *,
    self_positions: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> DistillVQResult:
    """Learn IVF-PQ codebooks for ``vectors`` by distilling their exact inner-product ranking.

    Args:
        vectors: [n, d] float32 document vectors (the float index's).
        queries: [nq, d] training query vectors.
        dev_queries: [nd, d] held-out query vectors; the epoch of best dev recall@10 is kept.
        self_positions: for pseudo-queries that are documents, each query's own position (excluded
            from its candidates); None for real queries.
        progress: called with one line per epoch.
    """
    import torch

    config = config or DistillVQConfig()
    x = np.ascontiguousarray(vectors, np.float32)
    q_train = np.ascontiguousarray(queries, np.float32)
    q_dev = np.ascontiguousarray(dev_queries, np.float32)
    n, d = x.shape
    if q_train.ndim != 2 or q_train.shape[1] != d or q_dev.ndim != 2 or q_dev.shape[1] != d:
        raise ValueError(
            f"queries and dev_queries must be [n, {d}] like the vectors; "
            f"got {q_train.shape} and {q_dev.shape}"
        )
    if len(q_train) == 0 or len(q_dev) == 0:
        raise ValueError("distill_ivfpq needs training queries and dev queries (got an empty set)")
    if d % config.pq_m:
        raise ValueError(f"pq_m={config.pq_m} must divide the dimension {d}")
    if n < max(config.nlist, 2**config.pq_nbits):
        raise ValueError(
            f"{n} vectors cannot train {config.nlist} lists and {2**config.pq_nbits} codewords; "
            "lower nlist / pq_nbits"
        )
    say = progress or (lambda line: None)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)

    t0 = time.perf_counter()
    sample = x
    if config.faiss_training_sample and n > config.faiss_training_sample:
        sample = x[np.sort(rng.choice(n, config.faiss_training_sample, replace=False))]
    base = faiss_ivfpq(sample, config.nlist, config.pq_m, config.pq_nbits, seed=config.seed)
    centroids, codebooks = codebooks_of(base)
    dev_exact = _exact_top(x, q_dev, 10)
    k_exact = min(config.candidates, n)
    train_exact = _exact_top(x, q_train, k_exact)

    def export(c: np.ndarray, p: np.ndarray) -> Any:
        index = build_ivfpq(c, p, nprobe=config.nprobe)
        index.add(x)
        return index

    def dev_recall(index: Any) -> float:
        return recall_at_k(_search(index, q_dev, 10), dev_exact, 10)

    current = export(centroids, codebooks)
    best = {"epoch": 0, "recall": dev_recall(current), "c": centroids, "p": codebooks}
    history = [
        {
            "epoch": 0,
            "dev_recall@10": round(best["recall"], 4),
            "loss": None,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    ]
    say(f"epoch 0 (FAISS k-means): dev recall@10 {best['recall']:.4f}")

    c_param = torch.nn.Parameter(torch.from_numpy(centroids.copy()), requires_grad=config.train_ivf)
    p_param = torch.nn.Parameter(torch.from_numpy(codebooks.copy()))
    params = [p_param] + ([c_param] if config.train_ivf else [])
    optimizer = torch.optim.Adam(params, lr=config.lr)
    x_t = torch.from_numpy(x)
    m, _, dsub = codebooks.shape
    tau = config.temperature

    for epoch in range(1, config.epochs + 1):
        t_epoch = time.perf_counter()
        lists, codes = assign(x, c_param.detach().numpy(), p_param.detach().numpy())
        lists_t, codes_t = torch.from_numpy(lists), torch.from_numpy(codes)
        ann = _search(current, q_train, config.ann_candidates) if config.ann_candidates else None
        order = rng.permutation(len(q_train))
        losses = []
        for s in range(0, len(order), config.batch_size):
            rows = order[s : s + config.batch_size]
            cand = _candidates(rows, train_exact, ann, n, config.random_negatives, self_positions, rng)
            valid = torch.from_numpy(cand >= 0)
            cand_t = torch.from_numpy(np.maximum(cand, 0))
            q = torch.from_numpy(q_train[rows])  # [B, d]
            teacher = torch.einsum("bd,bld->bl", q, x_t[cand_t])
            coarse = torch.einsum("bd,bld->bl", q, c_param[lists_t[cand_t]])
            chosen = p_param[torch.arange(m)[None, None, :], codes_t[cand_t]]  # [B, L, M, dsub]
            fine = torch.einsum("bmk,blmk->bl", q.view(len(rows), m, dsub), chosen)
            student = coarse + fine
            loss = _kl(teacher, student, valid, tau)
            if config.ivf_weight and config.train_ivf:
                loss = loss + config.ivf_weight * _kl(teacher, coarse, valid, tau)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        c_now, p_now = c_param.detach().numpy().copy(), p_param.detach().numpy().copy()
        current = export(c_now, p_now)
        recall = dev_recall(current)
        history.append(
            {
                "epoch": epoch,
                "dev_recall@10": round(recall, 4),
                "loss": round(float(np.mean(losses)), 5),
                "seconds": round(time.perf_counter() - t_epoch, 1),
            }
        )
        say(f"epoch {epoch}: loss {np.mean(losses):.4f}, dev recall@10 {recall:.4f}")
        if recall > best["recall"]:
            best = {"epoch": epoch, "recall": recall, "c": c_now, "p": p_now}
    return DistillVQResult(
        index=build_ivfpq(best["c"], best["p"], nprobe=config.nprobe),
        chosen_epoch=int(best["epoch"]),
        history=history,
        config=config,
    )


def _candidates(
    rows: np.ndarray,
    exact: np.ndarray,
    ann: np.ndarray | None,
    n: int,
    n_random: int,
    self_positions: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """[B, L] candidate positions per query (deduplicated, padded with -1)."""
    parts = [exact[rows]]
    if ann is not None:
        parts.append(ann[rows])
    if n_random:
        parts.append(rng.integers(0, n, size=(len(rows), n_random)))
    joined = np.concatenate(parts, axis=1)
    out = np.full_like(joined, -1)
    for i, row in enumerate(joined):
        keep = np.unique(row[row >= 0])
        if self_positions is not None:
            keep = keep[keep != self_positions[rows[i]]]
        out[i, : len(keep)] = keep
    width = int((out >= 0).sum(axis=1).max())
    return out[:, :width]


def _kl(teacher: Any, student: Any, valid: Any, tau: float) -> Any:
    """Mean over queries of KL(softmax(teacher / tau) || softmax(student / tau)) over valid columns."""
    import torch

    neg = torch.finfo(teacher.dtype).min / 2
    t = torch.where(valid, teacher / tau, neg)
    s = torch.where(valid, student / tau, neg)
    p = torch.softmax(t, dim=-1)
    return (p * (torch.log_softmax(t, dim=-1) - torch.log_softmax(s, dim=-1))).where(valid, 0).sum(-1).mean()


def distill_index(
    index: Any,
    queries: Sequence[str] | np.ndarray | None = None,
    config: DistillVQConfig | None = None,
    *,
    doc_queries: int = 0,
    dev_fraction: float = 0.2,
    rescore_factor: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """A distilled IVF-PQ copy of ``index`` (a :class:`~distilir_index.dense.DenseIndex` of any type;
    its float vectors are the teacher): the same documents, encoder and metadata, searched by FAISS.

    Args:
        queries: the queries the index will serve (strings, encoded with the index's encoder, or an
            [n, d] array); a seeded ``dev_fraction`` of them is held out to choose the epoch.
        doc_queries: also use that many documents (seeded sample) as pseudo-queries; with no
            ``queries``, the dev queries are then documents too.
    """
    from distilir_index.dense import DenseIndex

    if not isinstance(index, DenseIndex):
        raise TypeError(f"distill_index needs a DenseIndex, got {type(index).__name__}")
    config = config or DistillVQConfig()
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    x = index.vectors()
    rng = np.random.default_rng(config.seed)
    if queries is not None and not isinstance(queries, np.ndarray):
        texts = [str(q) for q in queries]
        if index.encoder is None:
            raise ValueError("this index has no encoder to encode query strings; pass query vectors")
        queries = index.encoder.encode_queries(texts) if texts else None
    q = None if queries is None else np.ascontiguousarray(queries, np.float32)
    if (q is None or len(q) == 0) and doc_queries < 1:
        raise ValueError(
            "distilling a quantiser needs queries: give the queries the index serves (a few hundred at "
            "least) "
            "and/or doc_queries=N documents as pseudo-queries"
        )
    self_pos = None
    if q is not None and len(q):
        if len(q) < 10:
            raise ValueError(
                f"got {len(q)} queries; at least 10 are needed (a dev split is held out of them)"
            )
        perm = rng.permutation(len(q))
        n_dev = max(1, int(round(dev_fraction * len(q))))
        dev, train = q[perm[:n_dev]], q[perm[n_dev:]]
        if doc_queries:
            pick = rng.choice(len(x), min(doc_queries, len(x)), replace=False)
            self_pos = np.concatenate([np.full(len(train), -1), pick])
            train = np.concatenate([train, x[pick]])
    else:
        pick = rng.choice(len(x), min(doc_queries, len(x)), replace=False)
        n_dev = max(1, int(round(dev_fraction * len(pick))))
        dev, train, self_pos = x[pick[:n_dev]], x[pick[n_dev:]], pick[n_dev:]
    result = distill_ivfpq(x, train, dev, config, self_positions=self_pos, progress=progress)
    trained_by = {
        **result.describe(),
        "queries": {"train": int(len(train)), "dev": int(len(dev)), "doc_queries": int(doc_queries)},
        "teacher": {"corpus": index.describe().get("corpus"), "factory": index.factory},
    }
    return index.with_quantizer(
        result.index, trained_by=trained_by, nprobe=config.nprobe, rescore_factor=rescore_factor
    )
