"""Published reference figures shown beside ours (demo, benchmarks). Each entry names its source.

Only figures from a named source are listed; a missing entry prints as "-"."""

from __future__ import annotations

__all__ = ["PUBLISHED"]

PYSERINI_BEIR = "pyserini 2CR BEIR (BM25 flat, k1=0.9 b=0.4)"
PYSERINI_BEIR_MF = "pyserini 2CR BEIR (BM25 multifield)"
ST_MTEB = "sentence-transformers / MTEB leaderboard (all-MiniLM-L6-v2)"
DATA_README = "shared data README (run shipped with the pool, scored against the pool's qrels)"

#: (dataset, system) -> {measure: (value, source)}
PUBLISHED: dict[tuple[str, str], dict[str, tuple[float, str]]] = {
    ("scifact", "bm25"): {"nDCG@10": (0.679, PYSERINI_BEIR), "R@100": (0.925, PYSERINI_BEIR)},
    ("scifact", "all-MiniLM-L6-v2"): {"nDCG@10": (0.645, ST_MTEB)},
    ("arguana", "bm25"): {"nDCG@10": (0.397, PYSERINI_BEIR)},
    ("arguana", "bm25-multifield"): {"nDCG@10": (0.414, PYSERINI_BEIR_MF)},
    ("arguana", "all-MiniLM-L6-v2"): {"nDCG@10": (0.502, ST_MTEB)},
    ("trec-dl-2019-passage-pool", "bm25-run"): {"nDCG@10": (0.5187, DATA_README)},
}
