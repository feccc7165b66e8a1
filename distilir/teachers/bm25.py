"""BM25 teacher: lexical scores of given documents under a corpus's statistics.

Lucene's BM25 (the variant bm25s calls ``method="lucene"``; Kamphuis et al. 2020, "Which BM25 do you
mean? A large-scale reproducibility study of scoring variants", ECIR)::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

``N``, ``df`` and ``avgdl`` come from the corpus given at construction (:class:`BM25Stats`); ``tf``
and ``|d|`` from the document being scored, which need not be in that corpus. Query terms repeat
with their multiplicity, and terms absent from the corpus contribute 0 (bm25s drops them from the
query). Text is analysed by the BM25 index's own chain (``distilir_index.bm25.make_analyzer``):
lower-cased, Lucene-like word tokens, Lucene's 33 English stop words removed, the original Porter
stemmer (Lucene's PorterStemFilter) -- so the ``bm25`` teacher and the ``bm25`` first stage are one
function; defaults ``k1=0.9, b=0.4`` (Anserini's). Statistics saved before this (bm25s' regex
tokens, Snowball stemmer) load with the settings they record.

Why hand-written: bm25s scores the documents of its own index; a teacher must score an arbitrary
candidate list with a corpus's statistics, which is this formula over the index's analyser.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from distilir.teachers.base import BaseTeacher, TeacherError, check_lists

__all__ = ["BM25Stats", "BM25Teacher", "bm25_tokenize"]


def bm25_tokenize(
    texts: Sequence[str],
    *,
    stopwords: str | None = "en",
    stemmer: str | None = "porter",
    tokenizer: str = "lucene",
) -> list[list[str]]:
    """Token strings of ``texts`` under the BM25 index's analyser (``distilir_index.bm25.analyze``)."""
    from distilir_index.bm25 import analyze

    return analyze(texts, stopwords=stopwords, stemmer=stemmer, tokenizer=tokenizer)


@dataclass(frozen=True)
class BM25Stats:
    """Collection statistics: number of documents, mean document length (tokens) and document
    frequency per token, plus the tokenizer settings they were computed with."""

    n_docs: int
    avgdl: float
    df: Mapping[str, int] = field(repr=False)
    stopwords: str | None = "en"
    stemmer: str | None = "porter"
    tokenizer: str = "lucene"

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        *,
        stopwords: str | None = "en",
        stemmer: str | None = "porter",
        tokenizer: str = "lucene",
        batch_size: int = 10_000,
        show_progress: bool = False,
    ) -> BM25Stats:
        df: Counter[str] = Counter()
        n = total = 0
        batch: list[str] = []

        def flush() -> None:
            nonlocal n, total
            for toks in bm25_tokenize(batch, stopwords=stopwords, stemmer=stemmer, tokenizer=tokenizer):
                n += 1
                total += len(toks)
                df.update(set(toks))
            batch.clear()

        for text in tqdm(texts, desc="bm25 stats", unit="doc", disable=not show_progress):
            if not isinstance(text, str):
                raise TeacherError(f"corpus texts must be str, got {type(text).__name__}")
            batch.append(text)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        if n == 0:
            raise TeacherError("the corpus is empty; BM25 needs the collection's documents for df and avgdl")
        return cls(
            n_docs=n, avgdl=total / n, df=dict(df), stopwords=stopwords, stemmer=stemmer, tokenizer=tokenizer
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_docs": self.n_docs,
            "avgdl": self.avgdl,
            "df": dict(self.df),
            "stopwords": self.stopwords,
            "stemmer": self.stemmer,
            "tokenizer": self.tokenizer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BM25Stats:
        missing = {"n_docs", "avgdl", "df"} - set(data)
        if missing:
            raise TeacherError(f"BM25 stats need keys n_docs, avgdl, df; missing {sorted(missing)}")
        return cls(
            n_docs=int(data["n_docs"]),
            avgdl=float(data["avgdl"]),
            df=dict(data["df"]),
            stopwords=data.get("stopwords", "en"),
            stemmer=data.get("stemmer", "english"),
            tokenizer=data.get("tokenizer", "bm25s"),  # stats written before the index's analyser
        )

    def fingerprint(self) -> str:
        fields = [self.n_docs, repr(float(self.avgdl)), sorted(self.df.items()), self.stopwords, self.stemmer]
        if self.tokenizer != "bm25s":  # stats of the bm25s-regex era keep their fingerprint
            fields.append(self.tokenizer)
        blob = json.dumps(fields, separators=(",", ":")).encode()
        return "sha256:" + sha256(blob).hexdigest()


class BM25Teacher(BaseTeacher):
    """BM25 scores (``score_type="bm25"``) of candidate documents, with the statistics of a corpus.

    Args:
        corpus_texts: the collection's document texts (a sequence, or a mapping id -> text); used only
            to compute :class:`BM25Stats`. Give either this or ``stats``.
        stats: precomputed statistics.
        k1, b: BM25 parameters (Anserini defaults 0.9 and 0.4).
        stopwords, stemmer, tokenizer: analyser settings when ``corpus_texts`` is given (those of
            ``distilir_index.BM25Index``: Lucene's English stop list, PyStemmer's ``"porter"``, the
            ``"lucene"`` splitter; ``None`` disables stop words or stemming).
    """

    kind = "bm25"
    help = "optional: a JSON file of BM25Stats; else the corpus (build_teacher(spec, corpus=...))"
    example = "bm25?k1=0.9&b=0.4"
    score_type = "bm25"
    name = "bm25"

    @classmethod
    def from_spec(cls, target: Any, options: dict[str, Any], *, corpus: Any = None) -> BM25Teacher:
        """TARGET: a JSON file of :meth:`BM25Stats.to_dict`; without one, the statistics of ``corpus``
        (``{docid: text | Document}`` or a list of texts)."""
        if target:
            file = Path(target)
            if not file.is_file():
                raise TeacherError(
                    f"bm25 target {target!r} is not a file; give a JSON of BM25Stats.to_dict() or corpus="
                )
            return cls(stats=BM25Stats.from_dict(json.loads(file.read_text(encoding="utf-8"))), **options)
        if corpus is None:
            raise TeacherError(
                "a bm25 teacher needs the corpus for its statistics (df, avgdl): "
                "build_teacher('bm25', corpus={docid: text, ...})"
            )
        from distilir.types import Document

        values = corpus.values() if isinstance(corpus, Mapping) else corpus
        texts = [t.full_text if isinstance(t, Document) else t for t in values]
        if any(not isinstance(t, str) for t in texts):
            raise TeacherError("corpus values must be texts or Documents")
        return cls(texts, **options)

    def __init__(
        self,
        corpus_texts: Sequence[str] | Mapping[str, str] | None = None,
        *,
        stats: BM25Stats | Mapping[str, Any] | None = None,
        k1: float = 0.9,
        b: float = 0.4,
        stopwords: str | None = "en",
        stemmer: str | None = "porter",
        tokenizer: str = "lucene",
        show_progress: bool = False,
    ) -> None:
        if (corpus_texts is None) == (stats is None):
            raise TeacherError(
                "BM25Teacher needs the corpus statistics: pass corpus_texts=[...] (the collection's texts) "
                "or stats=BM25Stats(...), exactly one of them"
            )
        if not (isinstance(k1, (int, float)) and k1 >= 0):
            raise TeacherError(f"k1 must be a number >= 0, got {k1!r}; 0.9 is Anserini's default")
        if not (isinstance(b, (int, float)) and 0 <= b <= 1):
            raise TeacherError(f"b must be in [0, 1], got {b!r}; 0.4 is Anserini's default")
        if stats is None:
            texts = corpus_texts.values() if isinstance(corpus_texts, Mapping) else corpus_texts
            stats = BM25Stats.from_texts(
                texts, stopwords=stopwords, stemmer=stemmer, tokenizer=tokenizer, show_progress=show_progress
            )
        elif not isinstance(stats, BM25Stats):
            stats = BM25Stats.from_dict(stats)
        self.stats = stats
        self.k1 = float(k1)
        self.b = float(b)
        self._idf = {
            t: math.log(1.0 + (stats.n_docs - df + 0.5) / (df + 0.5)) for t, df in stats.df.items() if df > 0
        }

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        stats = self.stats
        return bm25_tokenize(
            texts, stopwords=stats.stopwords, stemmer=stats.stemmer, tokenizer=stats.tokenizer
        )

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        check_lists(queries, docs)
        q_tokens = self.tokenize(list(queries))
        unique = list(dict.fromkeys(d for ds in docs for d in ds))
        doc_tf = {
            text: (Counter(toks), len(toks)) for text, toks in zip(unique, self.tokenize(unique), strict=True)
        }
        k1, b, avgdl = self.k1, self.b, self.stats.avgdl
        out = []
        for toks, ds in zip(q_tokens, docs, strict=True):
            terms = [(t, self._idf[t]) for t in toks if t in self._idf]
            scores = []
            for d in ds:
                tf, length = doc_tf[d]
                norm = k1 * (1.0 - b + b * length / avgdl)
                s = 0.0
                for t, idf in terms:
                    f = tf.get(t, 0)
                    if f:
                        s += idf * f / (f + norm)
                scores.append(s)
            out.append(scores)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "kind": "bm25",
            "method": "lucene",
            "k1": self.k1,
            "b": self.b,
            "tokenizer": {
                "lower": True,
                "pattern": r"(?u)\b\w\w+\b" if self.stats.tokenizer == "bm25s" else self.stats.tokenizer,
                "stopwords": self.stats.stopwords,
                "stemmer": self.stats.stemmer,
                "library": "bm25s + PyStemmer"
                + ("" if self.stats.tokenizer == "bm25s" else " (distilir_index)"),
            },
            "corpus": {
                "n_docs": self.stats.n_docs,
                "avgdl": self.stats.avgdl,
                "fingerprint": self.stats.fingerprint(),
            },
            "score_type": self.score_type,
        }
