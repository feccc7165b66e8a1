"""The on-disk format of the teacher score store: columns, shard schema, file names, and the rows of
one scored batch (the layout, units and invariants are documented in :mod:`distilir.teachers.store`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from distilir.teachers.base import TeacherError
from distilir.types import Document, Query

__all__ = [
    "COLUMNS",
    "FORMAT",
    "LOCK",
    "MANIFEST",
    "PARTIAL",
    "SHARD",
    "StoreError",
    "batch_rows",
    "now",
    "shard_schema",
    "text_of",
]

FORMAT = "distilir-teacher-scores/1"
MANIFEST = "manifest.json"
LOCK = ".lock"
SHARD = re.compile(r"^shard-(\d{5,})\.parquet$")
PARTIAL = re.compile(r"^\..+\.partial$")

COLUMNS = {
    "qid": "query id (string)",
    "qhash": "sha256 of the UTF-8 query text, first 16 hex characters",
    "docid": "document id (string)",
    "dhash": "sha256 of the UTF-8 document text the teacher read, first 16 hex characters",
    "score": "teacher score (float64) in the unit of score_type; higher is more relevant",
    "rank": "1-based position of the document in the candidate list it was scored with (int32)",
}


class StoreError(TeacherError):
    """A store that cannot be opened or written as asked; the message says what to do."""


def shard_schema(fingerprint: str, shard: int) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("qid", pa.string()),
            ("qhash", pa.string()),
            ("docid", pa.string()),
            ("dhash", pa.string()),
            ("score", pa.float64()),
            ("rank", pa.int32()),
        ]
    )
    return schema.with_metadata(
        {
            b"distilir.format": FORMAT.encode(),
            b"distilir.teacher_fingerprint": fingerprint.encode(),
            b"distilir.shard": str(shard).encode(),
        }
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def text_of(value: Any, what: str, key: str) -> str:
    """Accept plain strings, ``distilir.types.Document`` (its ``full_text``) and ``Query`` (``text``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Document):
        return value.full_text
    if isinstance(value, Query):
        return value.text
    raise StoreError(f"{what} {key!r} is a {type(value).__name__}; expected a str (or a Query/Document)")


def batch_rows(
    batch: Sequence[str], todo: Mapping[str, Any], results: Sequence[Sequence[float]]
) -> dict[str, list[Any]]:
    """The shard rows of one scored batch of queries, the teacher's output checked first (one score
    per pending document, all finite): ``todo`` is :meth:`TeacherStore._plan`'s plan, ``results``
    the teacher's score lists in ``batch`` order. Shared by :meth:`TeacherStore.score` and the Ray
    driver (``distilir.teachers.ray_scoring``), which commits rows its replicas computed."""
    if len(results) != len(batch):
        raise StoreError(
            f"the teacher returned {len(results)} score lists for a batch of {len(batch)} queries"
        )
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for qid, res in zip(batch, results, strict=True):
        (_, qh), pending = todo[qid]
        if len(res) != len(pending):
            raise StoreError(
                f"teacher returned {len(res)} scores for {len(pending)} documents of query {qid!r}"
            )
        arr = np.asarray(res, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise StoreError(
                f"teacher returned NaN/inf scores for query {qid!r}; nothing of this batch was stored"
            )
        for (docid, dh, rank, _), score in zip(pending, arr.tolist(), strict=True):
            rows["qid"].append(qid)
            rows["qhash"].append(qh)
            rows["docid"].append(docid)
            rows["dhash"].append(dh)
            rows["score"].append(score)
            rows["rank"].append(rank)
    return rows
