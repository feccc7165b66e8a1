"""Datasets named by an ``ir_datasets`` id (https://ir-datasets.com; MacAvaney et al., SIGIR 2021).

``ir_datasets`` downloads the files of a dataset on first use into its home folder
(``$IR_DATASETS_HOME``, default ``~/.ir_datasets``) and reads them from there afterwards. Its records
are namedtuples whose fields differ by dataset; they are mapped to our types as follows:

- documents: ``doc_id``; ``title`` when the record has one; text from ``text``, else ``body``, else
  the record's ``default_text()``; other plain fields (str/int/float/bool) go to ``metadata``.
- queries: ``query_id``; text from ``text``, else ``title`` (TREC topics), else ``default_text()``.
- qrels: ``(query_id, doc_id, relevance)``.

An ir_datasets id names one query set with one qrels set, exposed here as one split, named after the
last component of the id that is a usual split word (``train``, ``dev``, ``test``, ``validation``,
``valid``, ``eval``, ``judged``), else ``"test"``: ``beir/scifact/test`` -> ``test``,
``msmarco-passage/dev/small`` -> ``dev``, ``msmarco-passage/trec-dl-2019/judged`` -> ``judged``.

Offline, ir_datasets would try to download and retry; here a dataset whose files are missing fails
at once with instructions: while the first record is fetched, ``IR_DATASETS_DL_TRIES`` defaults to 1
and ``IR_DATASETS_DL_TIMEOUT`` to 5 seconds (values you set yourself are kept).
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from distilir.data.base import BaseDataset, DatasetError, DatasetUnavailable
from distilir.types import Document, Qrels, Query

__all__ = ["IrDatasetsDataset", "is_ir_datasets_id", "split_name_of"]

_SPLIT_WORDS = ("train", "dev", "test", "validation", "valid", "eval", "judged")
_SKIP_DOC_FIELDS = {"doc_id", "title", "text", "body"}
_END = object()


def split_name_of(dataset_id: str) -> str:
    """The split name an ir_datasets id is exposed under (see the module docstring)."""
    for part in reversed(dataset_id.split("/")[1:]):
        if part in _SPLIT_WORDS:
            return part
    return "test"


def is_ir_datasets_id(dataset_id: str) -> bool:
    """True when ``ir_datasets`` knows the id (a registry lookup; nothing is downloaded)."""
    try:
        _import_ir_datasets().load(dataset_id)
    except KeyError:
        return False
    return True


def _import_ir_datasets() -> Any:
    try:
        import ir_datasets
    except ImportError as exc:  # pragma: no cover - ir_datasets is a core dependency
        raise ImportError(
            "loading ir_datasets ids needs the `ir_datasets` package: pip install 'ir-datasets>=0.5.5'"
        ) from exc
    return ir_datasets


@contextlib.contextmanager
def _fast_fail() -> Iterator[None]:
    """Make ir_datasets give up after one download attempt (unless the user configured otherwise)."""
    defaults = {"IR_DATASETS_DL_TRIES": "1", "IR_DATASETS_DL_TIMEOUT": "5"}
    added = [k for k in defaults if k not in os.environ]
    for key in added:
        os.environ[key] = defaults[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _text_of(record: Any, fields: Iterable[str]) -> str:
    for name in fields:
        value = getattr(record, name, None)
        if isinstance(value, str):
            return value
    if hasattr(record, "default_text"):
        return str(record.default_text())
    return " ".join(v for v in record if isinstance(v, str))


def _doc(record: Any) -> Document:
    title = getattr(record, "title", "")
    metadata = {
        k: v
        for k, v in record._asdict().items()
        if k not in _SKIP_DOC_FIELDS and isinstance(v, (str, int, float, bool))
    }
    return Document(
        id=str(record.doc_id),
        text=_text_of(record, ("text", "body")),
        title=title if isinstance(title, str) else "",
        metadata=metadata,
    )


def _query(record: Any) -> Query:
    return Query(id=str(record.query_id), text=_text_of(record, ("text", "title")))


class IrDatasetsDataset(BaseDataset):
    """A dataset read through ``ir_datasets`` (see the module docstring).

    Args:
        dataset_id: an ir_datasets id such as ``"beir/scifact/test"``.
        name: defaults to the id.
        split: the name of the single split; defaults to :func:`split_name_of` of the id.
        check: fetch one record now, so that a dataset whose files are missing fails here, fast,
            rather than at first use.
    """

    kind = "ir_datasets"

    def __init__(
        self, dataset_id: str, *, name: str | None = None, split: str | None = None, check: bool = True
    ):
        irds = _import_ir_datasets()
        try:
            self._ds = irds.load(dataset_id)
        except KeyError:
            close = difflib.get_close_matches(dataset_id, list(irds.registry), n=5, cutoff=0.6)
            hint = f" Close ids: {close}." if close else ""
            raise DatasetError(
                f"{dataset_id!r} is not an ir_datasets id.{hint} See https://ir-datasets.com for the "
                "catalogue, or give a dataset folder name / path, or register a local BEIR folder with "
                "distilir.data.register_local(id, path)."
            ) from None
        self.dataset_id = dataset_id
        self._split = split or split_name_of(dataset_id)
        super().__init__(name or dataset_id, dataset_id)
        if check:
            for has, make in (
                ("has_queries", self._ds.queries_iter),
                ("has_qrels", self._ds.qrels_iter),
                ("has_docs", self._ds.docs_iter),
            ):
                if getattr(self._ds, has)():
                    probe = self._guarded(has.removeprefix("has_"), make)
                    try:
                        next(probe, None)
                    finally:
                        probe.close()
                    break

    def _unavailable(self, what: str, exc: BaseException) -> DatasetUnavailable:
        irds = _import_ir_datasets()
        home = irds.util.home_path()
        top = self.dataset_id.split("/")[0]
        return DatasetUnavailable(
            f"ir_datasets could not provide the {what} of {self.dataset_id!r} "
            f"({type(exc).__name__}: {str(exc)[:300]}). Its files are not in the ir_datasets home "
            f"({home}) and downloading them failed (no internet here?). To use it offline, either:\n"
            f"  1. place its files under {home / top} (copy that folder from a machine with internet "
            f"where ir_datasets.load({self.dataset_id!r}) was iterated once), or point IR_DATASETS_HOME "
            "to a folder that holds them (set before Python starts); or\n"
            "  2. convert it to a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and call "
            f"distilir.data.register_local({self.dataset_id!r}, '/path/to/folder'), after which "
            f"load_dataset({self.dataset_id!r}) reads that folder."
        )

    def _guarded(self, what: str, make: Callable[[], Iterable[Any]]) -> Iterator[Any]:
        """Iterate ``make()``; errors while fetching the first record (the download) become DatasetError."""
        with _fast_fail():
            try:
                it = iter(make())
                first = next(it, _END)
            except DatasetError:
                raise
            except Exception as exc:  # ir_datasets raises requests, OS and Runtime errors alike
                raise self._unavailable(what, exc) from exc
        if first is _END:
            return
        yield first
        yield from it

    def iter_corpus(self) -> Iterator[Document]:
        if not self._ds.has_docs():
            raise DatasetError(f"ir_datasets id {self.dataset_id!r} has no documents.")
        return (_doc(r) for r in self._guarded("documents", self._ds.docs_iter))

    def _iter_queries(self) -> Iterator[tuple[Query, str]]:
        if not self._ds.has_queries():
            raise DatasetError(f"ir_datasets id {self.dataset_id!r} has no queries.")
        where = f"ir_datasets:{self.dataset_id}"
        return ((_query(r), where) for r in self._guarded("queries", self._ds.queries_iter))

    def splits(self) -> list[str]:
        return [self._split] if self._ds.has_qrels() else []

    def _load_qrels(self, split: str) -> Qrels:
        qrels: Qrels = {}
        for r in self._guarded("qrels", self._ds.qrels_iter):
            qrels.setdefault(str(r.query_id), {})[str(r.doc_id)] = int(r.relevance)
        return qrels

    def doc_count(self) -> int:
        if self._doc_count is None and self._corpus is None:
            with contextlib.suppress(Exception):
                count = self._ds.docs_count()
                if count is not None:
                    self._doc_count = int(count)
        return super().doc_count()

    def get_config_dict(self) -> dict[str, Any]:
        irds = _import_ir_datasets()
        return {**super().get_config_dict(), "split": self._split, "ir_datasets_version": irds.__version__}
