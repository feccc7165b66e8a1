"""BM25 over an embedded inverted index (bm25s: numpy/scipy, no JVM).

Scoring (Lucene's BM25, ``method="lucene"``; Kamphuis et al., ECIR 2020, "Which BM25 do you mean?")::

    score(q, d) = sum_{t in q} c(t, q) * idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with ``c(t, q)`` the count of term ``t`` in the query (Anserini's bag-of-words query weights a
repeated term by its count), ``N`` the number of live documents and ``avgdl`` their mean length in
indexed tokens. Defaults match pyserini's BEIR "flat" BM25 (title + " " + text in one field):
``k1=0.9, b=0.4``.

Analysis, compared with Lucene's ``EnglishAnalyzer`` (StandardTokenizer -> EnglishPossessiveFilter ->
LowerCaseFilter -> StopFilter(33 English stop words) -> PorterStemFilter) used by Anserini:

* lower-casing, the same 33 stop words (bm25s' ``STOPWORDS_EN`` is Lucene's list) and the original
  Porter stemmer (PyStemmer ``"porter"``; ``"english"`` is Snowball/Porter2) -- the same;
* tokenizer ``"lucene"``: a regular expression approximating UAX#29 word boundaries (letters and
  digits joined across ``. ' :``; digits across ``, ;``) plus removal of a trailing ``'s``. It
  differs from StandardTokenizer on scripts without spaces (CJK ideographs are not split into single
  characters), on emoji and on some punctuation inside words. ``"bm25s"`` is bm25s' default
  ``\\b\\w\\w+\\b`` (drops one-character tokens);
* Lucene stores each document length lossily in one byte (SmallFloat) and computes ``N``/``avgdl``
  over documents that have at least one token; bm25s uses exact lengths and counts every document.

Changes without a full rebuild of what is expensive: bm25s precomputes a static document x term
score matrix, which depends on ``N``, ``avgdl`` and every ``df``, so *any* add or delete changes
every score. The index therefore keeps each document's token ids (tokenization, the costly Python
part, happens once in ``add``) and rebuilds the bm25s matrix lazily, on the first search (or save)
after a change: O(total tokens) (bm25s counts terms per document in Python, then numpy), ~1.5 s for
SciFact's 5,183 abstracts on the shared 2-core machine (tokenizing them takes ~5 s, once). Deletes
are tombstones in between and are dropped (compacted) at that rebuild, so a deleted document is
never scored. Scores after any sequence of adds and deletes equal those of an index built fresh
over the live documents. Batch writes between searches; a write-heavy workload wants a main + delta
segment design (not implemented).

Filters are pre-filters: the allowed documents become bm25s' ``weight_mask`` (scores of the others
multiplied by 0), so ``k`` hits come back whenever ``k`` allowed documents match a query term. Like
Lucene, only documents that match at least one query term are returned (score > 0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.base import ArtifactDir, BaseIndex, Hit, ManifestError, read_manifest
from distilir_index.loading import DocumentTable

__all__ = ["BM25Index", "analyze", "lucene_like_split", "make_analyzer"]

#: Version of our analysis chain, recorded in the manifest; bump when tokens change for the same text.
TOKENIZER_VERSION = "distilir-bm25-analysis/1"
_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_LUCENE_TOKEN = re.compile(r"\w+(?:(?:[.'\u2019:]|(?<=\d)[,;](?=\d))\w+)*")
_POSSESSIVE = ("'s", "\u2019s", "\uff07s")
_TOKENIZERS = {"lucene": None, "bm25s": r"(?u)\b\w\w+\b"}


def lucene_like_split(text: str) -> list[str]:
    """Split (already lower-cased) text into word tokens the way Lucene's StandardTokenizer followed
    by EnglishPossessiveFilter mostly does: ``"U.S. bank's 3,000 e-mails"`` -> ``["u.s", "bank",
    "3,000", "e", "mails"]``. Hand-written: bm25s takes a splitter, not a Lucene analyzer."""
    out = []
    for word in _LUCENE_TOKEN.findall(text):
        if word.endswith(_POSSESSIVE):
            word = word[:-2]
        if word:
            out.append(word)
    return out


def make_analyzer(
    *, stemmer: str | None = "porter", stopwords: str | Sequence[str] | None = "en", tokenizer: str = "lucene"
) -> tuple[Any, list[str]]:
    """The analysis chain of :class:`BM25Index` (see the module docstring): a ``bm25s`` Tokenizer that
    lower-cases, splits (``"lucene"``, ``"bm25s"`` or a regular expression), drops the stop words and
    stems (PyStemmer ``"porter"`` = Lucene's PorterStemFilter by default). Returns it with the stop list.
    The BM25 teacher of ``distilir`` analyses with this same chain, so ``bm25`` is one function."""
    import bm25s
    import Stemmer

    if stemmer is not None and stemmer not in Stemmer.algorithms():
        raise ValueError(
            f"unknown stemmer {stemmer!r}; use None or a PyStemmer algorithm, e.g. 'porter' (Lucene's "
            f"PorterStemFilter) or 'english' (Porter2). Available: {Stemmer.algorithms()}"
        )
    if isinstance(stopwords, str):
        if stopwords not in ("en", "english"):
            raise ValueError(f"stopwords must be 'en', None or a list of words, got {stopwords!r}")
        stop_list = list(bm25s.stopwords.STOPWORDS_EN)
    elif stopwords is None:
        stop_list = []
    else:
        stop_list = [str(w).lower() for w in stopwords]
    if tokenizer in _TOKENIZERS:
        splitter: Any = lucene_like_split if tokenizer == "lucene" else _TOKENIZERS[tokenizer]
    else:
        try:
            re.compile(tokenizer)
        except (re.error, TypeError) as exc:
            raise ValueError(
                f"tokenizer must be 'lucene', 'bm25s' or a regular expression, got {tokenizer!r} ({exc})"
            ) from exc
        splitter = tokenizer
    analyzer = bm25s.tokenization.Tokenizer(
        lower=True,
        splitter=splitter,
        stopwords=stop_list,
        stemmer=Stemmer.Stemmer(stemmer) if stemmer else None,
    )
    return analyzer, stop_list


def analyze(texts: Sequence[str], **settings: Any) -> list[list[str]]:
    """Token strings of ``texts`` under :func:`make_analyzer` ``(**settings)`` (an empty list for a
    text with no indexed token)."""
    analyzer, _ = make_analyzer(**settings)
    return [list(t) for t in analyzer.tokenize(list(texts), return_as="string", show_progress=False)]


def _auto_progress(n: int, show_progress: bool | None) -> bool:
    return n >= 1000 if show_progress is None else bool(show_progress)


class BM25Index(BaseIndex):
    """BM25 index (Lucene variant by default) with metadata filters, add/delete and atomic save/load.

    Args:
        k1: term-frequency saturation (default 0.9, pyserini BEIR flat).
        b: length normalisation in [0, 1] (default 0.4, pyserini BEIR flat).
        method: bm25s scoring variant: "lucene" (default), "robertson", "atire", "bm25l", "bm25+".
        stemmer: a PyStemmer algorithm ("porter" -- Lucene's PorterStemFilter -- by default,
            "english" for Snowball/Porter2, ...) or None for no stemming.
        stopwords: "en" (Lucene's 33 English stop words, default), None, or a list of words.
        tokenizer: "lucene" (default, see :func:`lucene_like_split`), "bm25s" (``\\b\\w\\w+\\b``) or a
            regular expression whose ``findall`` yields the tokens.
        store_text: keep document texts so hits carry ``text`` (and they are saved).
        n_threads: threads for batched search (bm25s ``n_threads``; 0 = in the calling thread).
        show_progress: progress bars for long batches (None: only for >= 1000 items).

    Example::

        index = BM25Index()
        index.add(["d1", "d2"], ["cats purr", "dogs bark"], metadata=[{"year": 2020}, {"year": 2021}])
        index.search(["purring cat"], k=10, filters={"year": {"$gte": 2020}})
    """

    kind = "bm25"
    help = "BM25 over a term index (bm25s, Porter-stemmed English analyser): no model, exact scores"

    def __init__(
        self,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "porter",
        stopwords: str | Sequence[str] | None = "en",
        tokenizer: str = "lucene",
        store_text: bool = True,
        n_threads: int = 0,
        show_progress: bool | None = None,
    ) -> None:
        if not isinstance(k1, (int, float)) or k1 < 0:
            raise ValueError(f"k1 must be a number >= 0 (pyserini BEIR uses 0.9), got {k1!r}")
        if not isinstance(b, (int, float)) or not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be a number in [0, 1] (pyserini BEIR uses 0.4), got {b!r}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        self._tok, stop_list = make_analyzer(stemmer=stemmer, stopwords=stopwords, tokenizer=tokenizer)
        if not isinstance(n_threads, int) or n_threads < -1:
            raise ValueError(f"n_threads must be an int >= 0 (or -1 for all cores), got {n_threads!r}")

        self.k1, self.b, self.method = float(k1), float(b), method
        self.stemmer, self.tokenizer = stemmer, tokenizer
        self.stopwords = stopwords if isinstance(stopwords, str) or stopwords is None else list(stop_list)
        self._stop_list = stop_list
        self.store_text = bool(store_text)
        self.n_threads = n_threads
        self.show_progress = show_progress
        self._docs = DocumentTable(store_text=self.store_text)
        self._tokens: list[list[int]] = []
        self._bm25: Any = None
        self._dirty = True
        self._lock = threading.RLock()

    # -- description -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __repr__(self) -> str:
        return (
            f"BM25Index(k1={self.k1}, b={self.b}, method={self.method!r}, stemmer={self.stemmer!r}, "
            f"docs={len(self)})"
        )

    def get_config_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild an equivalent empty index."""
        return {
            "k1": self.k1,
            "b": self.b,
            "method": self.method,
            "stemmer": self.stemmer,
            "stopwords": self.stopwords,
            "tokenizer": self.tokenizer,
            "store_text": self.store_text,
            "n_threads": self.n_threads,
        }

    def describe(self) -> dict[str, Any]:
        """What the manifest records: settings (with the analysis chain spelled out) and the corpus."""
        import bm25s

        settings = self.get_config_dict()
        settings.update(
            {
                "stopword_list": list(self._stop_list),
                "tokenizer_version": TOKENIZER_VERSION,
                "lowercase": True,
                "library": {"name": "bm25s", "version": bm25s.__version__},
            }
        )
        return {"kind": self.kind, "settings": settings, "encoder": None, "corpus": self._docs.corpus()}

    # -- writes ------------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Add documents (text indexed as given; pass ``title + " " + text`` for BEIR-style runs).

        Tokenizes now; the scoring matrix is rebuilt on the next search or save (see module docs).
        """
        if texts is None:
            raise ValueError("BM25Index.add needs the document texts: add(ids, texts, metadata=...)")
        ids, texts, metas = self._docs.check_new(ids, texts, metadata)
        assert texts is not None  # narrowed by check_new (texts was given)
        with self._lock:
            tokens = self._tok.tokenize(
                texts,
                update_vocab=True,
                show_progress=_auto_progress(len(texts), self.show_progress),
                allow_empty=False,
                return_as="ids",
            )
            self._docs.add(ids, texts, metas)
            self._tokens.extend(tokens)
            self._dirty = True

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (unknown ids are ignored); returns how many were deleted."""
        with self._lock:
            removed = self._docs.delete(ids)
            for p in removed:
                self._tokens[p] = []
            if len(removed):
                self._dirty = True
            return int(len(removed))

    def refresh(self) -> None:
        """Rebuild the bm25s matrix now if documents changed since the last build (search and save
        call this). Compacts deleted documents away."""
        import bm25s

        with self._lock:
            if not self._dirty and self._bm25 is not None:
                return
            if self._docs.n_deleted:
                keep = self._docs.compact()
                self._tokens = [self._tokens[p] for p in keep]
            if len(self._docs) == 0:
                self._bm25, self._dirty = None, False
                return
            model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method, backend="numpy")
            model.index(
                (self._tokens, dict(self._tok.get_vocab_dict())),
                create_empty_token=False,
                show_progress=_auto_progress(len(self._tokens), self.show_progress),
            )
            self._bm25, self._dirty = model, False

    # -- search ------------------------------------------------------------------------------------
    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None,
        n_threads: int | None = None,
        show_progress: bool | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` documents per query, best first; only documents matching a query term.

        Args:
            queries: query strings.
            k: hits per query (at most).
            filters: metadata conditions (see distilir_index.filters), applied before ranking.
            ids: restrict the search to these document ids.
            n_threads / show_progress: override the index settings for this call.
        """
        if isinstance(queries, (str, bytes)):
            raise TypeError("queries must be a list of strings, got a single string; wrap it in a list")
        queries = list(queries)
        for q in queries:
            if not isinstance(q, str):
                raise TypeError(f"BM25Index.search takes query strings, got {type(q).__name__}: {q!r}")
        k = self.check_k(k)
        out: list[list[Hit]] = [[] for _ in queries]
        if not queries:
            return out
        with self._lock:
            self.refresh()
            model, docs = self._bm25, self._docs
            if model is None:
                return out
            allowed = docs.allowed(filters, ids)
            if allowed is not None and len(allowed) == 0:
                return out
            mask = None
            if allowed is not None:
                mask = np.zeros(docs.n_positions, dtype=np.float32)
                mask[allowed] = 1.0
            progress = _auto_progress(
                len(queries), self.show_progress if show_progress is None else show_progress
            )
            q_tokens = self._tok.tokenize(
                queries, update_vocab=False, show_progress=False, allow_empty=False, return_as="ids"
            )
            todo = [i for i, t in enumerate(q_tokens) if t]
            if not todo:
                return out
            kk = int(min(k, docs.n_positions if allowed is None else len(allowed)))
            result = model.retrieve(
                [q_tokens[i] for i in todo],
                k=kk,
                sorted=True,
                return_as="tuple",
                show_progress=progress,
                n_threads=self.n_threads if n_threads is None else n_threads,
                weight_mask=mask,
            )
            positions, scores = np.asarray(result.documents), np.asarray(result.scores)
            for row, qi in enumerate(todo):
                good = scores[row] > 0  # matching docs only; masked-out docs score exactly 0
                out[qi] = [
                    docs.hit(int(p), float(s))
                    for p, s in zip(positions[row][good], scores[row][good], strict=True)
                ]
        return out

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index into ``path`` atomically (see distilir_index.base). Files of a generation:
        ``bm25s_*.gN.*`` (bm25s' own save: CSC score matrix as .npy + vocab/params JSON),
        ``tokens.gN.npy`` (int32, all documents' token ids concatenated), ``offsets.gN.npy`` (int64,
        ``[n+1]``, document i is ``tokens[offsets[i]:offsets[i+1]]``), ``vocab.gN.json`` (the
        tokenizer's word -> stem -> id maps), ``docs.gN.jsonl`` and ``digests.gN.npy``
        (see distilir_index.loading)."""
        with self._lock:
            self.refresh()
            described = self.describe()
            lengths = np.fromiter((len(t) for t in self._tokens), dtype=np.int64, count=len(self._tokens))
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = np.fromiter(
                (t for doc in self._tokens for t in doc), dtype=np.int32, count=int(offsets[-1])
            )
            vocab = {
                "word_to_stem": self._tok.word_to_stem,
                "stem_to_sid": self._tok.stem_to_sid,
                "word_to_id": self._tok.word_to_id,
            }
            with ArtifactDir(path, kind=self.kind) as art:
                if self._bm25 is not None:
                    self._write_bm25s(art)
                art.write("tokens", "tokens.npy", lambda tmp: _save_npy(tmp, flat))
                art.write("offsets", "offsets.npy", lambda tmp: _save_npy(tmp, offsets))
                art.write(
                    "vocab",
                    "vocab.json",
                    lambda tmp: tmp.write_text(json.dumps(vocab, ensure_ascii=False), "utf-8"),
                )
                self._docs.save(art)
                art.commit(settings=described["settings"], corpus=described["corpus"], encoder=None)
        return Path(path)

    def _write_bm25s(self, art: ArtifactDir) -> None:
        """bm25s saves into a folder of fixed file names; each file becomes one role of the
        generation (``bm25s_<name>``) so the manifest names plain files only."""
        scratch = art.path / (art.filename("scratch") + ".partial")  # swept if a save is interrupted
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            self._bm25.save(str(scratch), show_progress=False)
            for name in sorted(os.listdir(scratch)):
                stem = name.split(".", 1)[0]
                art.write(
                    f"bm25s_{stem}", f"bm25s_{name}", lambda tmp, name=name: os.replace(scratch / name, tmp)
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = False,
        n_threads: int | None = None,
        show_progress: bool | None = None,
    ) -> BM25Index:
        """Open an index written by :meth:`save`. ``mmap=True`` memory-maps the score matrix.

        Raises ManifestError if ``path`` is not a BM25 index."""
        import bm25s

        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        settings = dict(manifest.get("settings") or {})
        if settings.get("tokenizer_version") != TOKENIZER_VERSION:
            raise ManifestError(
                f"{path} was tokenized with {settings.get('tokenizer_version')!r}, this code uses "
                f"{TOKENIZER_VERSION!r}; queries would be analysed differently. Rebuild the index."
            )
        stopwords = settings.get("stopwords")
        if stopwords not in ("en", "english", None):
            stopwords = settings.get("stopword_list", stopwords)
        index = cls(
            k1=settings["k1"],
            b=settings["b"],
            method=settings["method"],
            stemmer=settings.get("stemmer"),
            stopwords=stopwords,
            tokenizer=settings.get("tokenizer", "lucene"),
            store_text=settings.get("store_text", True),
            n_threads=settings.get("n_threads", 0) if n_threads is None else n_threads,
            show_progress=show_progress,
        )
        files = manifest["files"]
        vocab = json.loads((path / files["vocab"]).read_text(encoding="utf-8"))
        index._tok.word_to_stem = vocab["word_to_stem"]
        index._tok.stem_to_sid = vocab["stem_to_sid"]
        index._tok.word_to_id = vocab["word_to_id"]
        index._docs = DocumentTable.load(path, manifest)
        flat = np.load(path / files["tokens"], mmap_mode="r" if mmap else None)
        offsets = np.load(path / files["offsets"])
        if len(offsets) != index._docs.n_positions + 1:
            raise ManifestError(
                f"{path}: {len(offsets) - 1} token lists for {index._docs.n_positions} documents; "
                "the index is damaged"
            )
        index._tokens = [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
        if "bm25s_params" in files:
            index._bm25 = bm25s.BM25.load(
                str(path),
                data_name=files["bm25s_data"],
                indices_name=files["bm25s_indices"],
                indptr_name=files["bm25s_indptr"],
                vocab_name=files["bm25s_vocab"],
                params_name=files["bm25s_params"],
                nnoc_name=files.get("bm25s_nonoccurrence_array", "-"),
                mmap=mmap,
                load_corpus=False,
                show_progress=False,
            )
            if int(index._bm25.scores["num_docs"]) != index._docs.n_positions:
                raise ManifestError(f"{path}: the bm25s matrix and docs.jsonl disagree on the document count")
        index._dirty = index._bm25 is None and len(index._docs) > 0
        return index


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array)
