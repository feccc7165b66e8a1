"""Streaming readers for corpus and query files in JSONL or TSV (plain or ``.gz``).

JSONL (BEIR): one object per line.

- corpus: ``{"_id": str, "title": str (optional), "text": str, ...}``; further keys go to
  ``Document.metadata``.
- queries: ``{"_id": str, "text": str, ...}``; further keys are ignored.

TSV (MS MARCO style, no quoting):

- corpus: ``id<TAB>text`` or ``id<TAB>title<TAB>text``
- queries: ``id<TAB>text``

An optional header row is recognised when its first cell is a usual id column name (``id``,
``_id``, ``docid``, ``doc_id``, ``pid``, ``qid``, ``query_id``, ``query-id``). Blank lines are skipped.
Every error names the file and the 1-based line number, says what was expected and what was found.

These are hand-written (not BEIR's ``GenericDataLoader``) because that loader reads whole files into
memory, cannot stream, and reports bad lines without their line number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distilir.data._io import open_text
from distilir.data.base import DatasetError
from distilir.types import Document, Query

__all__ = ["iter_corpus_file", "iter_queries_file", "file_format"]

_HEADER_IDS = {"id", "_id", "docid", "doc_id", "pid", "qid", "query_id", "query-id", "corpus-id"}


def file_format(path: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"tsv"`` from the name (``.jsonl``/``.json``, ``.tsv``/``.txt``, maybe ``.gz``)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    raise DatasetError(
        f"{path}: cannot tell the format from the file name; expected a name ending in .jsonl or .tsv "
        "(optionally .gz). Rename the file or convert it."
    )


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                snippet = line.strip()[:80]
                raise DatasetError(
                    f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}); expected one JSON "
                    f"object per line, got {snippet!r}. Fix or remove that line."
                ) from None
            if not isinstance(obj, dict):
                raise DatasetError(
                    f"{path}:{lineno}: expected a JSON object per line, got a {type(obj).__name__}."
                )
            yield lineno, obj


def _id_of(obj: dict[str, Any], path: Path, lineno: int, what: str) -> str:
    if "_id" not in obj:
        keys = sorted(obj)[:8]
        raise DatasetError(
            f"{path}:{lineno}: {what} has no '_id' field (keys found: {keys}); every line needs "
            '"_id" (BEIR format: {"_id": ..., "text": ...}).'
        )
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"{path}:{lineno}: '_id' must be a string, got {type(value).__name__} {value!r}.")
    value = str(value)
    if not value:
        raise DatasetError(f"{path}:{lineno}: '_id' is empty; every {what} needs a non-empty id.")
    return value


def _str_field(obj: dict[str, Any], key: str, path: Path, lineno: int, *, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise DatasetError(
                f"{path}:{lineno}: missing {key!r} field (keys found: {sorted(obj)[:8]}); "
                f"expected a string (it may be empty)."
            )
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{lineno}: {key!r} must be a string, got {type(value).__name__}.")
    return value


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open_text(path) as f:
        first = True
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            if first:
                first = False
                if cells[0].strip().lower() in _HEADER_IDS:
                    continue
            yield lineno, cells


def iter_corpus_file(path: str | os.PathLike[str]) -> Iterator[Document]:
    """Stream the documents of a JSONL or TSV corpus file (see the module docstring)."""
    path = Path(path)
    if file_format(path) == "jsonl":
        for lineno, obj in _json_lines(path):
            doc_id = _id_of(obj, path, lineno, "document")
            text = _str_field(obj, "text", path, lineno, required=True)
            title = _str_field(obj, "title", path, lineno, required=False)
            metadata = {k: v for k, v in obj.items() if k not in ("_id", "title", "text")}
            yield Document(id=doc_id, text=text, title=title, metadata=metadata)
    else:
        for lineno, cells in _tsv_rows(path):
            if len(cells) == 2:
                yield Document(id=cells[0].strip(), text=cells[1])
            elif len(cells) == 3:
                yield Document(id=cells[0].strip(), title=cells[1], text=cells[2])
            else:
                raise DatasetError(
                    f"{path}:{lineno}: expected 2 tab-separated columns (id, text) or 3 (id, title, text), "
                    f"got {len(cells)}. Tabs inside texts must be replaced by spaces."
                )


def iter_queries_file(path: str | os.PathLike[str]) -> Iterator[tuple[Query, str]]:
    """Stream ``(query, "file:line")`` pairs from a JSONL or TSV queries file."""
    path = Path(path)
    if file_format(path) == "jsonl":
        for lineno, obj in _json_lines(path):
            qid = _id_of(obj, path, lineno, "query")
            yield Query(id=qid, text=_str_field(obj, "text", path, lineno, required=True)), f"{path}:{lineno}"
    else:
        for lineno, cells in _tsv_rows(path):
            if len(cells) != 2:
                raise DatasetError(
                    f"{path}:{lineno}: expected 2 tab-separated columns (query id, text), got {len(cells)}."
                )
            yield Query(id=cells[0].strip(), text=cells[1]), f"{path}:{lineno}"
