"""Model-free pseudo-queries: the cheap baseline every synthetic-query run is compared against.

* :class:`TitleQueries` (``title``): the document's title as its query (documents without a title
  give none).
* :class:`CropQueries` (``crop``): sentence cropping, the inverse-cloze task of ORQA (Lee et al.,
  2019) and of the "pseudo-query" baselines of GPL / Promptagator: a seeded choice of ``span``
  consecutive sentences of the document, kept when it has ``min_words..max_words`` words. With
  ``word_dropout`` > 0 each word is dropped with that probability, so the query is not a verbatim
  copy of the passage (what ICT gets by removing the sentence from its context).

No library does this for arbitrary corpora with a seed per document (sentence-transformers' and
BEIR's generators need a model), so it is written here; the sentence splitter is a regular
expression that splits after ``. ! ?`` followed by white space and an upper-case letter or digit,
which is right for the abstracts and articles of the shared collections and fails safe (one long
"sentence") elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from distilir.queries.base import QueryGenerator, QueryGeneratorError
from distilir.types import Document

__all__ = ["CropQueries", "TitleQueries", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (see the module docstring for the rule); empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


class TitleQueries(QueryGenerator):
    """The title of each document as one query of type ``title``."""

    kind = "title"
    help = "the document title as its query (no model)"

    def __init__(self, min_words: int = 2) -> None:
        if min_words < 1:
            raise QueryGeneratorError(f"title: min_words must be >= 1, got {min_words}")
        self.min_words = int(min_words)

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        out = []
        for doc in docs:
            title = " ".join(doc.title.split())
            out.append([(title, "title")] if len(title.split()) >= self.min_words else [])
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"min_words": self.min_words}


class CropQueries(QueryGenerator):
    """Seeded sentence crops of each document as queries of type ``sentence``.

    Args:
        per_doc: crops per document (fewer when the document has fewer usable sentences).
        span: consecutive sentences per crop.
        min_words / max_words: a crop outside this length is skipped (a long crop is cut to
            ``max_words`` words only when no sentence of the document fits).
        word_dropout: probability of dropping each word of a crop (0 keeps it verbatim).
        include_title: also take the title as one query (type ``title``).
    """

    kind = "crop"
    help = "sentence crops of the document (inverse cloze; no model)"

    def __init__(
        self,
        per_doc: int = 3,
        span: int = 1,
        min_words: int = 5,
        max_words: int = 40,
        word_dropout: float = 0.0,
        include_title: bool = False,
    ) -> None:
        if per_doc < 1 or span < 1:
            raise QueryGeneratorError(f"crop: per_doc and span must be >= 1, got {per_doc} and {span}")
        if not 1 <= min_words <= max_words:
            raise QueryGeneratorError(
                f"crop: need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}"
            )
        if not 0.0 <= word_dropout < 1.0:
            raise QueryGeneratorError(f"crop: word_dropout must be in [0, 1), got {word_dropout}")
        self.per_doc = int(per_doc)
        self.span = int(span)
        self.min_words = int(min_words)
        self.max_words = int(max_words)
        self.word_dropout = float(word_dropout)
        self.include_title = bool(include_title)

    def _crops(self, doc: Document, rng: np.random.Generator) -> list[tuple[str, str]]:
        sentences = split_sentences(doc.text)
        spans = [
            " ".join(sentences[i : i + self.span]) for i in range(max(1, len(sentences) - self.span + 1))
        ]
        fits = [s for s in spans if self.min_words <= len(s.split()) <= self.max_words]
        if not fits and spans and len(spans[0].split()) > self.max_words:
            fits = [" ".join(spans[0].split()[: self.max_words])]
        chosen = [fits[i] for i in rng.permutation(len(fits))[: self.per_doc]] if fits else []
        out = []
        for text in chosen:
            words = text.split()
            if self.word_dropout:
                keep = rng.random(len(words)) >= self.word_dropout
                words = [w for w, k in zip(words, keep, strict=True) if k] or words[:1]
            out.append((" ".join(words), "sentence"))
        if self.include_title and doc.title.strip():
            out.append((" ".join(doc.title.split()), "title"))
        return out

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        return [self._crops(doc, np.random.default_rng(seed)) for doc, seed in zip(docs, seeds, strict=True)]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "per_doc": self.per_doc,
            "span": self.span,
            "min_words": self.min_words,
            "max_words": self.max_words,
            "word_dropout": self.word_dropout,
            "include_title": self.include_title,
        }
