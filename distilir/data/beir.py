"""BEIR folders: the layout of the BEIR benchmark (Thakur et al., NeurIPS 2021 Datasets & Benchmarks).

::

    <folder>/corpus.jsonl[.gz]    {"_id": str, "title": str, "text": str} per line
    <folder>/queries.jsonl[.gz]   {"_id": str, "text": str} per line
    <folder>/qrels/<split>.tsv    header "query-id<TAB>corpus-id<TAB>score", then integer grades
    <folder>/runs/<name>.trec     optional: first-stage runs shipped with the data (TREC format)

Everything streams from disk; the corpus is cached only when :meth:`corpus` is called. When both a
plain and a gzipped copy of a file exist, the plain one is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from distilir.data.base import BaseDataset, DatasetError
from distilir.data.formats import iter_corpus_file, iter_queries_file
from distilir.data.trec import read_qrels
from distilir.types import Document, Qrels, Query

__all__ = ["BeirDataset", "is_beir_folder"]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def is_beir_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a corpus and a queries file in BEIR layout."""
    path = Path(path)
    return path.is_dir() and _find(path, "corpus") is not None and _find(path, "queries") is not None


class BeirDataset(BaseDataset):
    """A dataset read from a BEIR folder (see the module docstring).

    Args:
        path: the folder.
        name: defaults to the folder name.
    """

    kind = "beir"

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_dir():
            raise DatasetError(
                f"BEIR folder {self.path} does not exist; expected a folder holding corpus.jsonl[.gz], "
                "queries.jsonl[.gz] and qrels/<split>.tsv."
            )
        corpus, queries = _find(self.path, "corpus"), _find(self.path, "queries")
        qrels_dir = self.path / "qrels"
        missing = []
        if corpus is None:
            missing.append("corpus.jsonl or corpus.jsonl.gz")
        if queries is None:
            missing.append("queries.jsonl or queries.jsonl.gz")
        if not qrels_dir.is_dir() or not any(qrels_dir.glob("*.tsv")):
            missing.append("qrels/<split>.tsv (at least one split, e.g. qrels/test.tsv)")
        if missing:
            present = sorted(p.name + ("/" if p.is_dir() else "") for p in self.path.iterdir())
            raise DatasetError(
                f"{self.path} is not a complete BEIR folder: missing {', '.join(missing)}. "
                f"Found: {present or 'nothing'}. A BEIR folder holds corpus.jsonl[.gz], queries.jsonl[.gz] "
                "and qrels/<split>.tsv."
            )
        self.corpus_file: Path = cast(Path, corpus)  # both checked just above
        self.queries_file: Path = cast(Path, queries)
        self.qrels_dir = qrels_dir
        super().__init__(name or self.path.name, str(self.path))

    def iter_corpus(self) -> Iterator[Document]:
        return iter_corpus_file(self.corpus_file)

    def _corpus_location(self) -> str:
        return str(self.corpus_file)

    def _iter_queries(self) -> Iterator[tuple[Query, str]]:
        return iter_queries_file(self.queries_file)

    def splits(self) -> list[str]:
        return sorted(p.stem for p in self.qrels_dir.glob("*.tsv"))

    def _load_qrels(self, split: str) -> Qrels:
        return read_qrels(self.qrels_dir / f"{split}.tsv", format="beir")

    def runs(self) -> dict[str, Path]:
        runs_dir = self.path / "runs"
        if not runs_dir.is_dir():
            return {}
        return {p.name.removesuffix(".trec"): p for p in sorted(runs_dir.glob("*.trec"))}

    def _source_files(self) -> dict[str, Path]:
        files = {self.corpus_file.name: self.corpus_file, self.queries_file.name: self.queries_file}
        files.update({f"qrels/{p.name}": p for p in self.qrels_dir.glob("*.tsv")})
        return files
