"""Helpers shared by the benchmark scripts that the library does not offer as such.

Data loading, first-stage retrieval and evaluation come from ``distilir.data``,
``distilir.candidates`` and ``distilir.evaluation``; this module only holds what two or more
scripts would otherwise repeat around those calls.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from distilir.types import Run

__all__ = ["BM25S_ANALYSIS", "bm25s_run", "data_dir", "write_report"]

#: bm25s' own analysis (``\b\w\w+\b`` tokens, Lucene's 33 English stop words, Snowball English
#: stemmer), which the LLM-rerank and teacher-throughput benchmarks were measured with. The library's
#: BM25 default is the Lucene-like chain (its own tokenizer, Porter stemmer), which ranks differently.
BM25S_ANALYSIS = {"tokenizer": "bm25s", "stemmer": "english", "stopwords": "en"}


def data_dir(arg: str | None) -> Path:
    """``--data-dir`` or ``$DISTILIR_DATA_DIR``; exits with a message when neither names a folder."""
    value = arg or os.environ.get("DISTILIR_DATA_DIR")
    if not value:
        sys.exit("set DISTILIR_DATA_DIR (the folder of BEIR-format collections) or pass --data-dir")
    path = Path(value)
    if not path.is_dir():
        sys.exit(f"data folder {path} does not exist; pass --data-dir or set DISTILIR_DATA_DIR")
    return path


def bm25s_run(dataset, queries: Mapping[str, str], k: int, *, stem: bool = True) -> Run:
    """BM25 (Lucene variant, k1=0.9, b=0.4) top-``k`` of ``queries`` over ``dataset``'s corpus
    (``title + " " + text``) with bm25s' analysis; ``stem=False`` drops stop words and stemming too.

    The index is built once per corpus and setting and cached by ``distilir.candidates.build_index``.
    Documents that match no query term are not returned, so a query can get fewer than ``k``."""
    from distilir.candidates import FirstStageConfig, build_index, iter_search

    extra = BM25S_ANALYSIS if stem else {**BM25S_ANALYSIS, "stemmer": None, "stopwords": None}
    index = build_index(dataset, FirstStageConfig("bm25", k1=0.9, b=0.4, extra=extra))
    return dict(iter_search(index, queries, k=k, desc="bm25 search"))


def write_report(path: str | os.PathLike[str], lines: list[str]) -> None:
    """Write a Markdown report atomically (a temporary file renamed over it) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("\n".join(lines), encoding="utf-8")
    os.replace(partial, path)
    print("\n".join(lines))
