"""A dataset from files named one by one: a corpus, a queries file and one qrels file per split.

::

    ds = LocalDataset(corpus="collection.tsv", queries="queries.dev.tsv",
                      qrels={"dev": "qrels.dev.txt"}, name="my-msmarco-slice")

- corpus: ``.jsonl`` (BEIR objects) or ``.tsv`` (``id<TAB>text`` or ``id<TAB>title<TAB>text``), maybe ``.gz``
- queries: ``.jsonl`` or ``.tsv`` (``id<TAB>text``), maybe ``.gz``; or SGML TREC topics (``<top>`` blocks)
- qrels: TREC (``qid 0 docid grade``) or BEIR TSV (``query-id corpus-id score``), detected per file.
  A single path is the split ``split`` (default ``"test"``); a mapping gives each split its file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from distilir.data.base import BaseDataset, DatasetError
from distilir.data.formats import file_format, iter_corpus_file, iter_queries_file
from distilir.data.trec import read_qrels, read_topics
from distilir.types import Document, Qrels, Query

__all__ = ["LocalDataset"]

PathLike = str | os.PathLike[str]


def _existing(path: PathLike, role: str) -> Path:
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DatasetError(f"{role} file {path} does not exist; give the path of an existing file.")
    return path


class LocalDataset(BaseDataset):
    """A dataset from explicit corpus / queries / qrels files (see the module docstring)."""

    kind = "local"

    def __init__(
        self,
        corpus: PathLike,
        queries: PathLike,
        qrels: PathLike | Mapping[str, PathLike],
        *,
        name: str | None = None,
        split: str = "test",
    ) -> None:
        self.corpus_file = _existing(corpus, "corpus")
        self.queries_file = _existing(queries, "queries")
        file_format(self.corpus_file)  # fail now, not on first read, for an unknown extension
        if isinstance(qrels, Mapping):
            if not qrels:
                raise DatasetError("qrels mapping is empty; give at least one {split: path}.")
            self.qrels_files = {str(s): _existing(p, f"qrels ({s})") for s, p in qrels.items()}
        else:
            self.qrels_files = {split: _existing(qrels, "qrels")}
        self._topics_sgml = self._looks_like_sgml(self.queries_file)
        if not self._topics_sgml:
            file_format(self.queries_file)
        super().__init__(name or self.corpus_file.parent.name, str(self.corpus_file.parent))

    @staticmethod
    def _looks_like_sgml(path: Path) -> bool:
        from distilir.data._io import open_text

        with open_text(path) as f:
            head = f.read(4096).lower()
        return "<top>" in head.replace(" ", "")

    def iter_corpus(self) -> Iterator[Document]:
        return iter_corpus_file(self.corpus_file)

    def _corpus_location(self) -> str:
        return str(self.corpus_file)

    def _iter_queries(self) -> Iterator[tuple[Query, str]]:
        if self._topics_sgml:
            return ((q, str(self.queries_file)) for q in read_topics(self.queries_file).values())
        return iter_queries_file(self.queries_file)

    def splits(self) -> list[str]:
        return sorted(self.qrels_files)

    def _load_qrels(self, split: str) -> Qrels:
        return read_qrels(self.qrels_files[split], format="auto")

    def _source_files(self) -> dict[str, Path]:
        files = {
            "corpus:" + self.corpus_file.name: self.corpus_file,
            "queries:" + self.queries_file.name: self.queries_file,
        }
        files.update({f"qrels:{s}:{p.name}": p for s, p in self.qrels_files.items()})
        return files

    def get_config_dict(self) -> dict:
        return {
            **super().get_config_dict(),
            "corpus": str(self.corpus_file),
            "queries": str(self.queries_file),
            "qrels": {s: str(p) for s, p in sorted(self.qrels_files.items())},
        }
