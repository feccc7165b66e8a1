"""The `QueryGenerator` protocol: a generator writes training queries for documents.

A generator turns a batch of documents into zero or more query texts per document, each tagged with a
query *type* (``question``, ``claim``, ``keywords``, ``title``, ``sentence``). Its description
(``get_config_dict``: kind, model identity, prompt text, sampling settings, seed) is hashed into the
generator *fingerprint* that keys the query store, so queries of two generators (or of one model
under two prompts) are never mixed in one store.

Generators are deterministic for a given seed and document: the store asks for the queries of one
document with a seed derived from ``(seed, doc_id)``, so an interrupted and resumed run produces the
same queries as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from distilir.types import Document

__all__ = ["QUERY_TYPES", "GeneratedQuery", "QueryGenerator", "QueryGeneratorError", "doc_seed"]

#: What a query looks like; generators say which they write, prompts are chosen per type.
QUERY_TYPES = ("question", "claim", "keywords", "title", "sentence")


class QueryGeneratorError(ValueError):
    """A generator spec or input that cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class GeneratedQuery:
    """One generated query: its text, the document it was written for and its type."""

    text: str
    doc_id: str
    type: str


def doc_seed(seed: int, doc_id: str) -> int:
    """A 63-bit seed for one document, stable across processes and Python versions."""
    return int.from_bytes(sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "big") >> 1


class QueryGenerator:
    """Base class: subclasses set ``kind`` and implement ``generate`` and ``get_config_dict``.

    ``generate(docs, seeds)`` returns, for each document, a list of ``(text, type)`` pairs (possibly
    empty); ``seeds[i]`` is the seed for ``docs[i]`` (see :func:`doc_seed`).
    """

    kind: str = "generator"
    #: a short help line shown by ``distilir queries generate --help``
    help: str = ""

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"kind": self.kind, **self.get_config_dict()}, sort_keys=True, default=str)
        return sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config_dict()})"


def check_types(types: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """Validate a list of query types against those a generator supports."""
    if isinstance(types, str):
        types = [t for t in types.replace("|", ",").split(",") if t]
    chosen = tuple(types)
    bad = [t for t in chosen if t not in allowed]
    if not chosen or bad:
        raise QueryGeneratorError(
            f"{what}: query types must be a non-empty subset of {', '.join(allowed)}; got {list(chosen)}"
        )
    return chosen
