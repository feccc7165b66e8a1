"""The `Dataset` protocol every loader implements, and the shared behaviour behind it.

A dataset is a corpus, a query set and one relevance-judgment (qrels) set per split::

    ds.iter_corpus() -> Iterator[Document]     streaming, constant memory
    ds.corpus()      -> dict[str, Document]    loaded once, then cached
    ds.queries(split=None) -> dict[str, Query] all queries, or only those judged in ``split``
    ds.qrels(split)  -> Qrels                  {qid: {docid: grade}}
    ds.splits()      -> list[str]
    ds.describe()    -> dict                   for manifests: name, kind, source, file sha256s, counts
    ds.validate()    -> ValidationReport       qrels naming unknown queries or documents
    ds.runs()        -> dict[str, Path]        TREC run files shipped with the dataset

``queries(split)`` follows BEIR: a split is evaluated on the queries its qrels judge, so queries of
the file that no qrels of the split mention are left out (SciFact's file holds train and test).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from distilir.types import Document, Qrels, Query

__all__ = [
    "BaseDataset",
    "Dataset",
    "DatasetError",
    "DatasetUnavailable",
    "DatasetWarning",
    "ValidationIssue",
    "ValidationReport",
]

_EXAMPLES = 5


class DatasetError(ValueError):
    """A dataset that cannot be found or read; the message names the file, the line and the fix."""


class DatasetUnavailable(DatasetError):
    """The dataset is valid but its files are not on this machine and could not be downloaded; the
    message says where to place them. Benchmarks skip such conditions instead of failing."""


class DatasetWarning(UserWarning):
    """Something odd in a dataset that does not stop loading (see ``Dataset.validate()``)."""


@runtime_checkable
class Dataset(Protocol):
    """What every dataset offers; see the module docstring for the meaning of each method."""

    name: str

    def iter_corpus(self) -> Iterator[Document]: ...

    def corpus(self) -> dict[str, Document]: ...

    def queries(self, split: str | None = None) -> dict[str, Query]: ...

    def qrels(self, split: str) -> Qrels: ...

    def splits(self) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...


_ISSUES = {
    # kind: (severity, what) — an "error" leaves nothing to evaluate or train on; a "warning" is odd data
    "empty_corpus": ("error", "the corpus holds no document"),
    "no_queries": ("error", "the queries file holds no query"),
    "no_judged_text": ("error", "no query judged in this split has a text in the queries file"),
    "unknown_query": ("warning", "qrels name queries that are not in the queries file"),
    "unknown_document": ("warning", "qrels point to documents that are not in the corpus"),
    "empty_query": ("warning", "queries have an empty text"),
    "no_relevant": ("warning", "judged queries have no relevant document (every grade <= 0)"),
}


@dataclass(frozen=True)
class ValidationIssue:
    """One kind of problem in one split: ``count`` occurrences, the first few as ``examples``."""

    kind: str  # a key of _ISSUES: "unknown_document", "unknown_query", "empty_corpus", ...
    split: str  # "" for problems of the whole dataset (corpus, queries file)
    count: int
    examples: tuple[tuple[str, str], ...]  # (query id, doc id) pairs as they appear in the qrels

    @property
    def severity(self) -> str:
        """``"error"`` (nothing usable: evaluation and training refuse) or ``"warning"``."""
        return _ISSUES[self.kind][0]

    def describe(self) -> str:
        shown = ", ".join(f"{q}->{d}" if self.kind == "unknown_document" else q for q, d in self.examples)
        where = f"split {self.split!r}: " if self.split else ""
        first = f" (first: {shown})" if shown else ""
        count = "" if self.severity == "error" else f"{self.count} "  # errors are one fact, not a count
        return f"{where}{count}{_ISSUES[self.kind][1]}{first}"


@dataclass(frozen=True)
class ValidationReport:
    """The result of :meth:`BaseDataset.validate`. ``ok`` is True when no issue was found.

    Unknown documents in qrels cannot be retrieved by any system; evaluation keeps them (as BEIR
    and trec_eval do), which lowers every system's recall and nDCG the same way. ArguAna ships 5
    such qrels upstream (beir-cellar/beir issues #101, #172), so they are reported, not fatal.
    """

    name: str
    counts: dict[str, Any]
    issues: tuple[ValidationIssue, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def errors(self) -> tuple[ValidationIssue, ...]:
        """Issues that leave nothing usable (an empty corpus, no query with a text)."""
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def unknown_documents(self) -> int:
        return sum(i.count for i in self.issues if i.kind == "unknown_document")

    @property
    def unknown_queries(self) -> int:
        return sum(i.count for i in self.issues if i.kind == "unknown_query")

    def summary(self) -> str:
        if self.ok:
            return f"{self.name}: OK ({self.counts})"
        lines = [f"{self.name}: {len(self.issues)} issue(s)"]
        lines += [f"  - {issue.describe()}" for issue in self.issues]
        if self.unknown_documents:
            lines.append(
                "  Qrels pointing to missing documents are kept for evaluation (they count against every "
                "system alike, as in BEIR); filter them out yourself if your protocol says otherwise."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "counts": dict(self.counts),
            "issues": [
                {
                    "kind": i.kind,
                    "severity": i.severity,
                    "split": i.split,
                    "count": i.count,
                    "examples": [list(e) for e in i.examples],
                }
                for i in self.issues
            ],
        }


class BaseDataset:
    """Shared behaviour: corpus caching, split filtering of queries, validation, counts.

    Subclasses implement ``iter_corpus``, ``_iter_queries``, ``_load_qrels(split)``, ``splits`` and
    ``_source_files`` (files to hash for ``describe``), and set ``kind`` and ``source``.
    """

    kind: str = "dataset"

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self._corpus: dict[str, Document] | None = None
        self._queries: dict[str, Query] | None = None
        self._qrels: dict[str, Qrels] = {}
        self._hashes: dict[str, str] | None = None
        self._doc_count: int | None = None

    # -- to implement -----------------------------------------------------------------------
    def iter_corpus(self) -> Iterator[Document]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _iter_queries(self) -> Iterator[tuple[Query, str]]:  # pragma: no cover - abstract
        """Yield (query, where) with ``where`` like ``file:line`` for error messages."""
        raise NotImplementedError

    def _load_qrels(self, split: str) -> Qrels:  # pragma: no cover - abstract
        raise NotImplementedError

    def splits(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _source_files(self) -> dict[str, Path]:
        return {}

    # -- shared -----------------------------------------------------------------------------
    def corpus(self) -> dict[str, Document]:
        """All documents by id, read once and cached. Raises on duplicate document ids."""
        if self._corpus is None:
            docs: dict[str, Document] = {}
            for doc in tqdm(self.iter_corpus(), desc=f"{self.name}: corpus", unit="doc", disable=None):
                if doc.id in docs:
                    raise DatasetError(
                        f"{self.name}: document id {doc.id!r} appears twice in the corpus "
                        f"({self._corpus_location()}); ids must be unique. Remove the duplicate."
                    )
                docs[doc.id] = doc
            self._corpus = docs
            self._doc_count = len(docs)
        return self._corpus

    def _corpus_location(self) -> str:
        return self.source

    def _all_queries(self) -> dict[str, Query]:
        if self._queries is None:
            queries: dict[str, Query] = {}
            for query, where in self._iter_queries():
                if query.id in queries:
                    if queries[query.id].text == query.text:
                        continue
                    raise DatasetError(
                        f"{where}: query id {query.id!r} appears twice with different texts; "
                        "ids must be unique. Remove or rename one of them."
                    )
                queries[query.id] = query
            self._queries = queries
        return self._queries

    def queries(self, split: str | None = None) -> dict[str, Query]:
        """All queries (``split=None``), or the queries judged in ``split``'s qrels, in file order.

        Judged query ids without a text in the queries file are left out with a
        :class:`DatasetWarning` (``validate()`` lists them).
        """
        queries = self._all_queries()
        if split is None:
            return dict(queries)
        judged = self.qrels(split)
        selected = {qid: q for qid, q in queries.items() if qid in judged}
        missing = len(judged) - len(selected)
        if missing:
            warnings.warn(
                f"{self.name}: {missing} of {len(judged)} queries judged in split {split!r} have no text in "
                "the queries file and are left out; run ds.validate() for the ids.",
                DatasetWarning,
                stacklevel=2,
            )
        return selected

    def qrels(self, split: str) -> Qrels:
        """Judgments of ``split`` as ``{qid: {docid: grade}}``, read once and cached (a copy is returned)."""
        if not isinstance(split, str):
            raise DatasetError(
                f"{self.name}: split must be a string, got {type(split).__name__}; one of {self.splits()}."
            )
        if split not in self._qrels:
            available = self.splits()
            if split not in available:
                raise DatasetError(
                    f"{self.name} has no split {split!r}; available splits: {available}. "
                    "Pass one of those (qrels files are what defines the splits)."
                )
            self._qrels[split] = self._load_qrels(split)
        return {qid: dict(docs) for qid, docs in self._qrels[split].items()}

    def runs(self) -> dict[str, Path]:
        """TREC run files that ship with the dataset, by name (file name without ``.trec``)."""
        return {}

    def doc_count(self) -> int:
        """Number of documents (one streaming pass unless the corpus is cached)."""
        if self._doc_count is None:
            self._doc_count = sum(1 for _ in self.iter_corpus())
        return self._doc_count

    def counts(self) -> dict[str, Any]:
        splits = {}
        for split in self.splits():
            qrels = self.qrels(split)
            splits[split] = {"queries": len(qrels), "qrels": sum(len(d) for d in qrels.values())}
        return {"documents": self.doc_count(), "queries": len(self._all_queries()), "splits": splits}

    def file_hashes(self) -> dict[str, str]:
        """sha256 of every source file, keyed by path relative to the dataset's folder (cached)."""
        if self._hashes is None:
            from distilir.data._io import sha256_file

            self._hashes = {rel: sha256_file(path) for rel, path in sorted(self._source_files().items())}
        return dict(self._hashes)

    def get_config_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": self.source}

    def describe(self) -> dict[str, Any]:
        """What a manifest records about this dataset: identity, file hashes and counts."""
        return {**self.get_config_dict(), "files": self.file_hashes(), "counts": self.counts()}

    def validate(self, *, strict: bool = False) -> ValidationReport:
        """Check every split's qrels against the corpus and the queries.

        Returns a :class:`ValidationReport` with counts and the first examples of each problem;
        with ``strict=True`` raises :class:`DatasetError` (carrying the report's summary) instead
        when anything is wrong.
        """
        doc_ids = set(self.corpus()) if self._corpus is not None else {d.id for d in self.iter_corpus()}
        queries = self._all_queries()
        issues: list[ValidationIssue] = []

        def found(kind: str, split: str, items: list[tuple[str, str]]) -> None:
            if items:
                issues.append(ValidationIssue(kind, split, len(items), tuple(items[:_EXAMPLES])))

        found("empty_corpus", "", [("", "")] if not doc_ids else [])
        found("no_queries", "", [("", "")] if not queries else [])
        found("empty_query", "", [(q, "") for q, v in queries.items() if not v.text.strip()])
        for split in self.splits():
            qrels = self.qrels(split)
            found("unknown_query", split, [(qid, "") for qid in qrels if qid not in queries])
            found(
                "unknown_document",
                split,
                [(qid, did) for qid, docs in qrels.items() for did in docs if did not in doc_ids],
            )
            if queries and qrels and not any(q in queries for q in qrels):
                found("no_judged_text", split, [("", "")])
            found(
                "no_relevant",
                split,
                [(q, "") for q, docs in qrels.items() if not any(g > 0 for g in docs.values())],
            )
        report = ValidationReport(self.name, self.counts(), tuple(issues))
        if strict and not report.ok:
            raise DatasetError(report.summary())
        return report

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, source={self.source!r})"
