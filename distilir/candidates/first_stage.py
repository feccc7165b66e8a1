"""First-stage retrieval over a dataset: build (or reuse) an index from `distilir_index`, search the
queries of a split in batches, and return a run (``{qid: {docid: score}}``).

Indexes are cached under ``$DISTILIR_CACHE/indexes/`` keyed by the corpus, the retriever kind and
its settings, so `distilir eval` and `distilir candidates` on the same collection build each index
once. A cached index is reused only if its manifest's corpus fingerprint equals the dataset's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distilir.types import Run

__all__ = ["FirstStageConfig", "RETRIEVERS", "build_index", "index_path", "iter_search", "retrieve"]

RETRIEVERS = ("bm25", "dense", "sparse", "hybrid")


@dataclass(frozen=True)
class FirstStageConfig:
    """How to retrieve candidates.

    Args:
        retriever: "bm25", "dense", "sparse" (SPLADE) or "hybrid" (RRF of BM25 and dense).
        model: the encoder for dense / sparse / hybrid (hub id, folder or packaged name).
        k1, b: BM25 parameters (pyserini's BEIR "flat" defaults).
        factory: FAISS index for dense ("flat" is exact).
        rrf_k: the k of reciprocal-rank fusion for hybrid.
        batch_size: queries searched per batch (bounds memory on large query sets).
    """

    retriever: str = "bm25"
    model: str | None = None
    k1: float = 0.9
    b: float = 0.4
    factory: str = "flat"
    rrf_k: int = 60
    batch_size: int = 256
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(f"unknown retriever {self.retriever!r}; expected one of {', '.join(RETRIEVERS)}")
        if self.retriever in ("dense", "sparse", "hybrid") and not self.model:
            default = "splade-tiny" if self.retriever == "sparse" else "all-MiniLM-L6-v2"
            object.__setattr__(self, "model", default)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    def cache_key(self, corpus_fingerprint: str) -> str:
        blob = json.dumps({"corpus": corpus_fingerprint, **asdict(self), "batch_size": None}, sort_keys=True)
        return f"{self.retriever}-{sha256(blob.encode()).hexdigest()[:16]}"


def _corpus_fingerprint(dataset) -> tuple[str, int]:
    from distilir_index import CorpusFingerprint

    fp = CorpusFingerprint()
    for doc in dataset.iter_corpus():
        fp.update(doc.id, doc.full_text)
    return fp.hexdigest(), fp.count


def _index_docs(index, dataset, batch: int = 4096, desc: str = "indexing") -> None:
    ids: list[str] = []
    texts: list[str] = []
    for doc in tqdm(dataset.iter_corpus(), desc=desc, unit="doc", mininterval=2):
        ids.append(doc.id)
        texts.append(doc.full_text)
        if len(ids) >= batch:
            index.add(ids, texts)
            ids, texts = [], []
    if ids:
        index.add(ids, texts)


def _new_index(config: FirstStageConfig):
    from distilir_index.loading import make_index

    if config.retriever == "bm25":
        return make_index("bm25", k1=config.k1, b=config.b, **dict(config.extra))
    if config.retriever == "dense":
        return make_index("dense", model=config.model, factory=config.factory)
    return make_index(config.retriever, model=config.model)


def _same_encoder(manifest: Mapping[str, Any], config: FirstStageConfig) -> bool:
    """Whether a cached dense / sparse index was built by the weights now in ``config.model``'s folder.

    The cache key holds the model *name*; a student re-trained or re-saved in place keeps its path and
    changes its weights, and its old index must then be rebuilt, not loaded (loading it would refuse
    the new query encoder). Hub ids not on disk have no fingerprint and are not compared."""
    if config.retriever not in ("dense", "sparse"):
        return True
    from distilir_index.models import fingerprint_folder, resolve_model

    recorded = (manifest.get("encoder") or {}).get("fingerprint")
    current = fingerprint_folder(resolve_model(config.model))
    return recorded is None or current is None or recorded == current


def index_path(dataset, config: FirstStageConfig, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`build_index` keeps the index of ``dataset`` for ``config`` (bm25, dense, sparse)."""
    from distilir_index.models import cache_dir as default_cache

    if config.retriever == "hybrid":
        raise ValueError("a hybrid first stage is two indexes (bm25 and dense); ask for each")
    fingerprint, _ = _corpus_fingerprint(dataset)
    root = Path(cache_dir) if cache_dir else default_cache() / "indexes"
    return root / f"{dataset.name.replace('/', '_')}-{config.cache_key(fingerprint)}"


def build_index(
    dataset, config: FirstStageConfig, cache_dir: str | Path | None = None, refresh: bool = False
):
    """Return a searchable index over ``dataset``'s corpus, loading it from the cache when the corpus
    fingerprint matches, else building and saving it there."""
    from distilir_index import load_index, read_manifest

    if config.retriever == "hybrid":
        from distilir_index.hybrid import HybridIndex

        bm25 = build_index(dataset, FirstStageConfig("bm25", k1=config.k1, b=config.b), cache_dir, refresh)
        dense = build_index(
            dataset, FirstStageConfig("dense", model=config.model, factory=config.factory), cache_dir, refresh
        )
        return HybridIndex(bm25, dense, method="rrf", rrf_k=config.rrf_k)

    path = index_path(dataset, config, cache_dir)
    fingerprint, _ = _corpus_fingerprint(dataset)
    if not refresh and (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        if manifest["corpus"].get("fingerprint") == fingerprint and _same_encoder(manifest, config):
            return load_index(path)
    index = _new_index(config)
    _index_docs(index, dataset, desc=f"indexing {dataset.name} ({config.retriever})")
    index.save(path)
    return index


def iter_search(
    index,
    queries: Mapping[str, str],
    k: int,
    batch_size: int = 256,
    drop_self: bool = False,
    desc: str = "searching",
) -> Iterator[tuple[str, dict[str, float]]]:
    """Search queries in batches and yield ``(qid, {docid: score})``; memory is bounded by one batch.

    ``drop_self`` removes a hit whose doc id equals the query id (and fetches one more to keep k)."""
    qids = list(queries)
    bar = tqdm(total=len(qids), desc=desc, unit="q", mininterval=2)
    for start in range(0, len(qids), batch_size):
        chunk = qids[start : start + batch_size]
        results = index.search([queries[q] for q in chunk], k=k + (1 if drop_self else 0))
        for qid, hits in zip(chunk, results, strict=True):
            ranked = {h.id: float(h.score) for h in hits if not (drop_self and h.id == qid)}
            if len(ranked) > k:
                ranked = dict(list(ranked.items())[:k])
            yield qid, ranked
        bar.update(len(chunk))
    bar.close()


def retrieve(
    dataset,
    split: str | None,
    config: FirstStageConfig,
    k: int = 1000,
    queries: Iterable[str] | None = None,
    drop_self: bool = False,
    cache_dir: str | Path | None = None,
) -> Run:
    """Run first-stage retrieval for the queries of ``split`` (or the given query ids)."""
    all_queries = dataset.queries(split)
    if queries is not None:
        wanted = list(queries)
        missing = [q for q in wanted if q not in all_queries]
        if missing:
            raise KeyError(f"{len(missing)} query ids are not in {dataset.name} (e.g. {missing[:3]})")
        all_queries = {q: all_queries[q] for q in wanted}
    texts = {qid: q.text for qid, q in all_queries.items()}
    index = build_index(dataset, config, cache_dir=cache_dir)
    return dict(
        iter_search(
            index,
            texts,
            k=k,
            batch_size=config.batch_size,
            drop_self=drop_self,
            desc=f"{config.retriever} search",
        )
    )
