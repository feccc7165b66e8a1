"""``distilir-index``: build an index from a corpus, serve indexes over HTTP, describe an index.

Examples::

    distilir-index build --corpus scifact --kind bm25 --out indexes/scifact-bm25
    distilir-index build --corpus data/scifact/corpus.jsonl.gz --kind dense \\
        --model all-MiniLM-L6-v2 --factory Flat --out indexes/scifact-dense
    distilir-index serve --index dense=indexes/scifact-dense --index bm25=indexes/scifact-bm25 \\
        --port 8000 --api-key secret
    distilir-index info indexes/scifact-dense

A corpus is a BEIR folder (holding ``corpus.jsonl`` or ``corpus.jsonl.gz``), such a file itself, or
the name of a folder under ``$DISTILIR_DATA_DIR``. Each JSON line gives ``_id`` (or ``id``/``docid``),
``title`` and ``text``; the indexed text is ``title + " " + text`` (BEIR's convention), ``title``
and every other field go to the document's metadata (filterable). This reader is deliberately
independent of distilir's data layer: distilir-index never imports distilir.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from distilir_index.loading import registered_index_kinds

__all__ = ["iter_corpus", "main", "resolve_corpus"]

_ID_FIELDS = ("_id", "id", "docid", "doc_id")
_JSON_TYPES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def resolve_corpus(spec: str) -> Path:
    """The corpus file for a BEIR folder, a corpus file, or a dataset name under $DISTILIR_DATA_DIR."""
    path = Path(spec).expanduser()
    if not path.exists() and os.environ.get("DISTILIR_DATA_DIR") and os.path.sep not in spec:
        path = Path(os.environ["DISTILIR_DATA_DIR"]) / spec
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{path} is a folder without corpus.jsonl or corpus.jsonl.gz; expected a BEIR-format folder"
        )
    if path.is_file():
        return path
    hint = "" if os.environ.get("DISTILIR_DATA_DIR") else " (set DISTILIR_DATA_DIR to look names up there)"
    raise FileNotFoundError(
        f"corpus {spec!r} not found: expected a BEIR folder, a corpus.jsonl[.gz] file "
        f"or a dataset name under $DISTILIR_DATA_DIR{hint}"
    )


def iter_corpus(
    spec: str | os.PathLike[str], limit: int | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(doc_id, text, metadata)`` from a corpus (see the module docstring).

    A line that is not a JSON object with an id raises ValueError naming the file and that line's
    number in the file (for ``.gz`` files too), and the column for broken JSON."""
    file = resolve_corpus(str(spec))
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as f:  # bytes: a decoding error is reported at its own line
            n = 0
            for line_no, raw in enumerate(f, 1):
                if limit is not None and n >= limit:
                    return
                row = _parse_line(file, line_no, raw)
                if row is None:
                    continue
                doc_id = next((row.pop(k) for k in _ID_FIELDS if k in row), None)
                if doc_id is None:
                    raise ValueError(
                        f"{file}:{line_no}: no document id; expected one of the fields {_ID_FIELDS}"
                    )
                title = row.get("title") or ""
                body = row.pop("text", "") or ""
                text = f"{title} {body}".strip() if title else body
                n += 1
                yield str(doc_id), text, row
    except gzip.BadGzipFile as exc:
        raise ValueError(
            f"{file}: not a gzip file ({exc}); a corpus named .gz must be gzip-compressed JSON lines "
            "(rename it to .jsonl if it is plain text)"
        ) from exc
    except (EOFError, zlib.error) as exc:
        raise ValueError(f"{file}: a damaged or truncated gzip file ({exc}); compress it again") from exc


def _parse_line(file: Path, line_no: int, raw: bytes) -> dict[str, Any] | None:
    """One corpus line as a dict (None for a blank line); errors name the file, line and column."""
    try:
        line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{file}:{line_no}: not UTF-8 ({exc.reason} at byte {exc.start + 1} of line {line_no}); "
            "a corpus is UTF-8 JSON lines: re-encode the file"
        ) from exc
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        # json.loads sees one line, so its own position says "line 1": report the file's line
        raise ValueError(
            f"{file}:{line_no}: not valid JSON ({exc.msg}: line {line_no} column {exc.colno}); "
            "each line must be one JSON object"
        ) from exc
    if not isinstance(row, dict):
        raise ValueError(
            f"{file}:{line_no}: expected a JSON object per line (with _id, title, text), "
            f"got a JSON {_JSON_TYPES.get(type(row), type(row).__name__)}: {line.strip()[:80]}"
        )
    return row


def _make_index(args: argparse.Namespace) -> Any:
    from distilir_index.loading import make_index

    settings: dict[str, Any] = {"store_text": not args.no_text}
    if args.kind == "bm25" or args.quiet:  # bm25: the bar of _build is its progress; --quiet: no bars
        settings["show_progress"] = False
    if args.kind != "bm25":
        settings.update(model=args.model, batch_size=args.batch_size)
        if args.kind == "dense":
            settings["factory"] = args.factory or "flat"
        if args.kind == "sparse":
            settings["query_side"] = args.query_side
    try:
        return make_index(args.kind, **settings)
    except TypeError as exc:  # a kind whose constructor takes other settings than a corpus build gives
        if "cannot build a" not in str(exc):
            raise
        raise ValueError(
            f"{exc}. `distilir-index build` makes bm25, dense and sparse indexes from a corpus; build a "
            f"{args.kind!r} index in Python (distilir_index.loading.make_index and its class's docstring)"
        ) from exc


def _corpus_fingerprint(args: argparse.Namespace) -> Any:
    """The fingerprint the index built by ``args`` will record (distilir_index.base.CorpusFingerprint)."""
    from distilir_index.base import CorpusFingerprint

    fingerprint = CorpusFingerprint()
    for doc_id, text, _ in iter_corpus(args.corpus, limit=args.limit):
        fingerprint.update(doc_id, text)
    return fingerprint


def _what(manifest: dict[str, Any]) -> str:
    """``N documents (corpus sha256:..., encoder ..., generation G, built DATE)`` from a manifest."""
    corpus = manifest.get("corpus") or {}
    model = (manifest.get("encoder") or {}).get("name")
    return (
        f"{corpus.get('count')} documents (corpus {str(corpus.get('fingerprint'))[:19]}..."
        + (f", encoder {model!r}" if model else "")
        + f", generation {manifest.get('generation')}, built {manifest.get('created')})"
    )


def _check_out(args: argparse.Namespace) -> str | None:
    """Refuse an ``--out`` this build should not write into: a file, a folder with other things in it
    (unless --overwrite; its files are kept even then), or an index of another kind or corpus
    (unless --overwrite). Rebuilding the same corpus into its own folder is allowed. Returns what to
    tell the user once the new index is saved (None when --out was new or empty)."""
    from distilir_index.base import MANIFEST, ManifestError, read_manifest

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder to write the index into (new or empty)")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return None
    again = "Pass --overwrite to replace it, or choose another --out."
    if MANIFEST not in entries:
        if not args.overwrite:
            shown = ", ".join(repr(e) for e in entries[:3]) + (
                f" and {len(entries) - 3} more" if len(entries) > 3 else ""
            )
            raise ValueError(
                f"--out {out} is not empty and holds no index (no manifest.json): {shown}. Give a new or "
                "empty folder, or pass --overwrite to write the index beside those files (they are kept)."
            )
        return f"wrote the index into {out} beside its {len(entries)} other entries (kept)"
    try:
        manifest = read_manifest(out)
    except ManifestError as exc:
        if not args.overwrite:
            raise ValueError(f"--out {out} holds a damaged index ({exc}). {again}") from exc
        return f"replaced the damaged index in {out} (--overwrite)"
    if args.overwrite:
        return f"replaced a {manifest.get('kind')!r} index of {_what(manifest)} in {out} (--overwrite)"
    if manifest.get("kind") != args.kind:
        raise ValueError(
            f"--out {out} holds a {manifest.get('kind')!r} index of {_what(manifest)}; this build makes a "
            f"{args.kind!r} index of {args.corpus!r}. {again}"
        )
    recorded = manifest.get("corpus") or {}
    new = _corpus_fingerprint(args)
    if (recorded.get("count"), recorded.get("fingerprint")) != (new.count, new.hexdigest()):
        raise ValueError(
            f"--out {out} holds a {args.kind!r} index of another corpus, {_what(manifest)}; this build "
            f"reads {new.count} documents from {args.corpus!r} (corpus {new.hexdigest()[:19]}...). {again}"
        )
    return f"replaced the {args.kind!r} index of {_what(manifest)} in {out}: the same corpus, rebuilt"


def _build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.factory and args.kind != "dense":
        raise SystemExit("--factory applies to --kind dense only (a FAISS index factory string)")
    if args.query_side != "model" and args.kind != "sparse":
        raise SystemExit(
            f"--query-side {args.query_side} applies to --kind sparse only (an inference-free sparse "
            "index: documents by --model, queries by IDF)"
        )
    if args.kind != "bm25" and args.model is None:
        raise SystemExit(
            f"--kind {args.kind} needs --model (a hub id, a local folder or a packaged name "
            "such as all-MiniLM-L6-v2 / splade-tiny)"
        )
    start = time.perf_counter()
    note = _check_out(args)  # before any model is loaded or document encoded
    index = _make_index(args)
    chunk: list[tuple[str, str, dict[str, Any]]] = []
    total = 0
    with tqdm(desc=f"indexing ({args.kind})", unit="doc", disable=args.quiet) as bar:
        for doc in iter_corpus(args.corpus, limit=args.limit):
            chunk.append(doc)
            if len(chunk) >= args.chunk_size:
                _add(index, chunk)
                total += len(chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            _add(index, chunk)
            total += len(chunk)
            bar.update(len(chunk))
    if total == 0:
        raise SystemExit(f"the corpus {args.corpus!r} holds no documents")
    out = index.save(args.out)
    took = time.perf_counter() - start
    if note:
        print(f"distilir-index build: {note}", file=sys.stderr)
    print(json.dumps({"out": str(out), "kind": args.kind, "documents": total, "seconds": round(took, 2)}))
    return 0


def _read_queries(spec: str) -> list[str]:
    """Query texts of a text file (one per line) or a JSONL[.gz] file of objects with a 'text' field."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--queries {path}: no such file (a text file, one query per line, or JSONL)")
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as f:
        jsonl = ".jsonl" in path.name or ".json" in path.name
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not jsonl:
                texts.append(line.strip())
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--queries {path}, line {n}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"--queries {path}, line {n}: expected an object with a 'text' string")
            texts.append(row["text"])
    if not texts:
        raise ValueError(f"--queries {path} holds no queries")
    return texts


def _distill_pq(args: argparse.Namespace) -> int:
    from distilir_index.base import MANIFEST
    from distilir_index.dense import DenseIndex, _ivfpq_shape
    from distilir_index.distill_vq import DistillVQConfig, distill_index

    out = Path(args.out).expanduser()
    if out.exists() and Path(args.index).expanduser().resolve() == out.resolve():
        raise ValueError("--out is the --index folder; write the compressed index to another folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (args.overwrite and (out / MANIFEST).is_file()):
            raise ValueError(
                f"--out {out} is not a new or empty folder; choose another, or pass --overwrite to "
                "replace the index in it"
            )
    if not args.queries and args.doc_queries < 1:
        raise SystemExit(
            "distill-pq needs --queries FILE and/or --doc-queries N (documents as pseudo-queries)"
        )
    start = time.perf_counter()
    texts = _read_queries(args.queries) if args.queries else None
    index = DenseIndex.load(args.index)
    nlist, m, nbits = _ivfpq_shape(len(index), index.dimension or 0, args.nlist, args.pq_m, args.pq_nbits)
    config = DistillVQConfig(
        nlist=nlist,
        pq_m=m,
        pq_nbits=nbits,
        nprobe=args.nprobe,
        epochs=args.epochs,
        lr=args.lr,
        temperature=args.temperature,
        ivf_weight=args.ivf_weight,
        seed=args.seed,
    )
    say = None if args.quiet else (lambda line: print(f"distill-pq: {line}", file=sys.stderr, flush=True))
    distilled = distill_index(
        index, texts, config, doc_queries=args.doc_queries, dev_fraction=args.dev_fraction, progress=say
    )
    distilled.save(out)
    trained = distilled.trained_by or {}
    history = trained.get("history") or []
    print(
        json.dumps(
            {
                "out": str(out),
                "factory": distilled.factory,
                "documents": len(distilled),
                "chosen_epoch": trained.get("chosen_epoch"),
                "dev_recall@10": {
                    "faiss": history[0]["dev_recall@10"] if history else None,
                    "distilled": max((h["dev_recall@10"] for h in history), default=None),
                },
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    )
    return 0


def _add(index: Any, chunk: list[tuple[str, str, dict[str, Any]]]) -> None:
    index.add([d[0] for d in chunk], [d[1] for d in chunk], metadata=[d[2] for d in chunk])


def _parse_index_specs(specs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(
                f"--index takes NAME=PATH (e.g. --index scifact=indexes/scifact-dense), got {spec!r}"
            )
        if name in out:
            raise SystemExit(f"--index {name!r} is given twice")
        out[name] = path
    return out


#: serve flags that set a ServiceSettings field of the same name (their defaults are that field's)
_SERVE_SETTINGS = (
    "api_key",
    "max_k",
    "max_batch",
    "batch_wait_ms",
    "batch_concurrency",
    "torch_threads",
    "max_body_bytes",
    "rerank_model",
    "embedding_model",
    "encoder_backend",
    "query_quantization",
    "encoder_threads",
)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from distilir_index.service.app import create_app
        from distilir_index.service.settings import ServiceSettings
    except ImportError as exc:
        raise ValueError(
            f"serving needs the 'serve' extra ({exc}): pip install 'distilir-index[serve]'"
        ) from exc

    overrides: dict[str, Any] = {}
    if args.index:
        overrides["indexes"] = _parse_index_specs(args.index)
    for field in _SERVE_SETTINGS:
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    if args.allow_reload_overrides:
        overrides["allow_reload_overrides"] = True
    if args.reload_root is not None:
        overrides["reload_root"] = args.reload_root
    if args.open_docs:
        overrides["open_docs"] = True
    if args.cors:
        overrides["cors"] = args.cors
    if args.query_encoder:
        models = _parse_index_specs(args.query_encoder)
        unknown = sorted(set(models) - set(overrides.get("indexes") or {}))
        if unknown:
            raise SystemExit(f"--query-encoder names {unknown}, which no --index names")
        overrides["index_models"] = models
    settings = ServiceSettings(**overrides)
    if not settings.indexes:
        raise SystemExit("no index to serve: pass --index NAME=PATH (or set DISTILIR_INDEXES)")
    _check_before_serving(settings)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def _check_before_serving(settings: Any) -> None:
    """What would otherwise fail inside the server's startup, as a traceback in its log: an index
    path that holds no index, a --query-encoder for an index without one, a model that is not on
    this machine (told without loading any weights: distilir_index.models.check_model_available)."""
    from distilir_index.base import read_manifest
    from distilir_index.models import ModelNotAvailable, check_model_available

    for name, path in settings.indexes.items():
        manifest = read_manifest(path)
        kind = manifest.get("kind")
        override = settings.index_models.get(name)
        if override is not None:
            if kind not in ("dense", "sparse"):
                raise ValueError(
                    f"--query-encoder {name}={override}: index {name!r} ({path}) is a {kind!r} index, which "
                    f"has no query encoder to replace; drop --query-encoder {name}=..."
                )
            try:
                check_model_available(override)
            except ModelNotAvailable as exc:
                raise ModelNotAvailable(f"--query-encoder {name}={override}: {exc}") from exc
            continue
        for where, described in _recorded_encoders(Path(path), manifest):
            source = described.get("path")
            if not source or not os.path.exists(source):  # as DenseEncoder.from_description does
                source = described.get("name")
            try:
                check_model_available(source)
            except ModelNotAvailable as exc:
                raise ModelNotAvailable(
                    f"index {name!r} ({where}) was built with the encoder {described.get('name')!r}, which "
                    f"cannot be loaded on this machine: {exc} If the index was built elsewhere, copy that "
                    f"model here and give --query-encoder {name}=<its folder>."
                ) from exc
    for flag, model in (
        ("--rerank-model", settings.rerank_model),
        ("--embedding-model", settings.embedding_model),
    ):
        if model:
            try:
                check_model_available(model)
            except ModelNotAvailable as exc:
                raise ModelNotAvailable(f"{flag} {model}: {exc}") from exc


def _recorded_encoders(path: Path, manifest: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(index folder, encoder description)`` of every model-backed index in ``path`` (a hybrid's
    sub-indexes included)."""
    from distilir_index.base import read_manifest

    if manifest.get("kind") in ("dense", "sparse") and manifest.get("encoder"):
        yield path, manifest["encoder"]
    for component in (manifest.get("components") or {}).values():
        sub = path / str((component or {}).get("path") or "")
        if sub != path and (sub / "manifest.json").is_file():
            yield from _recorded_encoders(sub, read_manifest(sub))


def _info(args: argparse.Namespace) -> int:
    from distilir_index.base import read_manifest

    path = Path(args.path)
    manifest = read_manifest(path)
    files = {
        role: {"file": name, "bytes": (path / name).stat().st_size}
        for role, name in manifest.get("files", {}).items()
    }
    summary = {
        "path": str(path.resolve()),
        "kind": manifest.get("kind"),
        "documents": (manifest.get("corpus") or {}).get("count"),
        "generation": manifest.get("generation"),
        "created": manifest.get("created"),
        "producer": manifest.get("producer"),
        "encoder": manifest.get("encoder"),
        "query_encoder": manifest.get("query_encoder"),
        "settings": manifest.get("settings"),
        "corpus": manifest.get("corpus"),
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
    }
    if args.load:
        from distilir_index.retriever import Retriever

        retriever = Retriever.load(path)
        summary["loaded"] = {"class": type(retriever.index).__name__, "count": len(retriever)}
        if "query_encoder" in retriever.describe():  # queries not encoded by the encoder (IDF): name it
            summary["loaded"]["query_encoder"] = type(retriever.query_encoder).__name__
    json.dump(summary, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default (argparse's own where the flag has one; texts that say theirs
    are left as written) and keeps the examples of the epilogs as typed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = any(action.default is v for v in (None, False, argparse.SUPPRESS))  # `in` counts 0 as False
        if "default" in text or unset or action.required:
            return text
        return super()._get_help_string(action)


class _ServeHelpFormatter(_HelpFormatter):
    """Also shows, for flags that set a ServiceSettings field, that field's default and its
    ``DISTILIR_*`` variable, read from ServiceSettings itself when help is printed (so never a copy
    that drifts, and the service is imported only for ``serve --help``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        if action.dest in _SERVE_SETTINGS and "default" not in text:
            text += f" (default: {_service_default(action.dest)}; env DISTILIR_{action.dest.upper()})"
        return text


def _service_default(field: str) -> str:
    try:
        from distilir_index.service.settings import ServiceSettings
    except ImportError:  # without the serve extra, help still prints
        return "see distilir_index.service.settings"
    default = ServiceSettings.model_fields[field].get_default(call_default_factory=True)
    return "none" if default is None else str(default).replace("%", "%%")


_BUILD_EXAMPLES = """examples:
  distilir-index build --corpus scifact --kind bm25 --out indexes/scifact-bm25
  distilir-index build --corpus data/scifact/corpus.jsonl.gz --kind dense \\
      --model all-MiniLM-L6-v2 --factory hnsw --out indexes/scifact-dense
  distilir-index build --corpus cranfield --kind sparse --model splade-tiny --limit 200 --out /tmp/cran-sparse
  distilir-index build --corpus scifact --kind sparse --model splade-tiny --query-side idf \\
      --out indexes/scifact-sparse-idf     # inference-free: searching it loads no model

--out must be new, empty, or an index of the same kind over the same corpus (rebuilt in place);
anything else is refused unless --overwrite (which still never deletes files the index did not write).
"""

_SERVE_EXAMPLES = """examples:
  distilir-index serve --index scifact=indexes/scifact-dense --port 8000
  distilir-index serve --index dense=indexes/scifact-dense --index bm25=indexes/scifact-bm25 \\
      --api-key secret --torch-threads 1
  distilir-index serve --index scifact=indexes/scifact-dense --query-encoder scifact=runs/qs/model

A flag that sets a service setting shows its DISTILIR_* variable, which sets it too (--index:
DISTILIR_INDEXES, --query-encoder: DISTILIR_INDEX_MODELS, JSON objects; distilir_index.service.settings).
"""

_DISTILL_EXAMPLES = """examples:
  distilir-index distill-pq --index indexes/scifact-dense --queries query-log.txt --out indexes/scifact-dvq
  distilir-index distill-pq --index indexes/cacm-dense --doc-queries 3000 --out indexes/cacm-dvq --epochs 4

The output is a dense IVF-PQ index (load, search and serve it like any other); its manifest's
settings.trained_by records the objective, the settings, the chosen epoch and every epoch's dev recall.
"""

_INFO_EXAMPLES = """examples:
  distilir-index info indexes/scifact-dense
  distilir-index info indexes/scifact-dense --load
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distilir-index",
        description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="examples:\n"
        + textwrap.indent(textwrap.dedent(__doc__.split("Examples::", 1)[1].split("\n\n", 2)[1]), "  ")
        + "\n\n`distilir-index COMMAND --help` explains each command's flags, with their defaults.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    b = sub.add_parser(
        "build",
        help="build an index from a corpus",
        description="Build an index from a corpus and save it (atomically) into --out.",
        epilog=_BUILD_EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    b.add_argument(
        "--corpus",
        required=True,
        help="BEIR folder, corpus.jsonl[.gz] file, or dataset name under $DISTILIR_DATA_DIR (required)",
    )
    b.add_argument(
        "--kind",
        required=True,
        choices=registered_index_kinds(),
        help="index kind (distilir_index.loading.INDEXES); bm25, dense and sparse build from a corpus "
        "alone (required)",
    )
    b.add_argument(
        "--model",
        help="encoder for dense/sparse: hub id, folder, or packaged name such as all-MiniLM-L6-v2, "
        "paraphrase-MiniLM-L3-v2, splade-tiny (default: none; required by dense and sparse)",
    )
    b.add_argument(
        "--out",
        required=True,
        help="index folder to write, saved atomically: new, empty, or an index of the same corpus and "
        "kind to rebuild (required)",
    )
    b.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an index of another corpus or kind in --out, or write into a non-empty folder "
        "that is no index (its files are kept) (default: refuse both)",
    )
    b.add_argument(
        "--factory",
        help="--kind dense: flat, hnsw, ivfpq, sq8, or any FAISS factory string (default: flat)",
    )
    b.add_argument(
        "--query-side",
        choices=["model", "idf"],  # SparseIndex's query_side values
        default="model",
        help="--kind sparse: how text queries are encoded: model (by --model, like the documents) or idf "
        "(inference-free: a query's distinct tokens weighted by IDF counted on the corpus and stored with "
        "the index; searching and loading it need no model and no torch)",
    )
    b.add_argument("--batch-size", type=int, default=64, help="encoder batch size")
    b.add_argument("--chunk-size", type=int, default=2048, help="documents per add() call")
    b.add_argument("--limit", type=int, help="index only the first N documents (default: all)")
    b.add_argument(
        "--no-text",
        action="store_true",
        help="do not store document texts in the index (default: store them)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars (default: show them)")
    b.set_defaults(func=_build)

    s = sub.add_parser(
        "serve",
        help="serve indexes over HTTP (see distilir_index.service)",
        description="Serve saved indexes over HTTP (search, embeddings, rerank, reload; /docs lists them).",
        epilog=_SERVE_EXAMPLES,
        formatter_class=_ServeHelpFormatter,
    )
    s.add_argument(
        "--index",
        action="append",
        metavar="NAME=PATH",
        help="an index to serve, repeatable; the first is the default index "
        "(default: $DISTILIR_INDEXES, a JSON object of NAME: PATH)",
    )
    s.add_argument(
        "--query-encoder",
        action="append",
        metavar="NAME=MODEL",
        help="encode the queries of index NAME with MODEL (the same encoder, or a query-side student "
        "trained against an index of that encoder; anything else is refused at startup), repeatable "
        "(default: the encoder each index's manifest names)",
    )
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    s.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    s.add_argument("--api-key", help="require this key (Authorization: Bearer or X-API-Key)")
    s.add_argument("--max-k", type=int, help="largest k a search may ask for")
    s.add_argument(
        "--max-batch",
        type=int,
        help="most inputs per embeddings request, documents per rerank request, queries per encoder call",
    )
    s.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413")
    s.add_argument("--batch-wait-ms", type=float, help="micro-batching window in ms; 0 turns batching off")
    s.add_argument("--batch-concurrency", type=int, help="micro-batches that may run at once")
    s.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads; 1 suits small shared machines, none leaves torch's choice (all cores)",
    )
    s.add_argument(
        "--encoder-backend",
        choices=["auto", "torch", "onnx"],
        help="how dense query encoders run (auto: ONNX Runtime on CPU when installed)",
    )
    s.add_argument(
        "--query-quantization",
        choices=["int8"],
        help="encode queries with the int8 dynamically quantised model (faster; cost in the benchmarks); "
        "none encodes them in float32",
    )
    s.add_argument("--encoder-threads", type=int, help="ONNX Runtime threads per query batch")
    s.add_argument("--rerank-model", help="cross-encoder for /v1/rerank; none: /v1/rerank is off")
    s.add_argument(
        "--embedding-model",
        help="sentence-transformers model for /v1/embeddings; none: a dense index's query encoder",
    )
    s.add_argument(
        "--cors",
        action="append",
        metavar="ORIGIN",
        help="allowed browser origin, repeatable (default: none, no CORS headers)",
    )
    s.add_argument(
        "--allow-reload-overrides",
        action="store_true",
        help="let POST /v1/indexes/{name}/reload name another path (under --reload-root) or model "
        "(default: off)",
    )
    s.add_argument(
        "--reload-root",
        default=None,
        help="folder that reload paths must lie in (default: the folder of each index's directory)",
    )
    s.add_argument(
        "--open-docs",
        action="store_true",
        help="serve /docs, /redoc and /openapi.json without the API key (default: behind it)",
    )
    s.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level",
    )
    s.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request",
    )
    s.set_defaults(func=_serve)

    d = sub.add_parser(
        "distill-pq",
        help="learn an IVF-PQ index from a dense index by distillation (Distill-VQ)",
        description="Compress a dense index into IVF-PQ whose centroids and codebooks are trained so that "
        "the compressed scores rank like the float vectors for the given queries "
        "(distilir_index.distill_vq), "
        "starting from FAISS's own k-means and keeping the epoch of best recall@10 on held-out queries.",
        epilog=_DISTILL_EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    d.add_argument(
        "--index", required=True, help="the dense index to compress (its float vectors teach) (required)"
    )
    d.add_argument(
        "--queries",
        help="queries like those the index will serve: a text file (one per line) or JSONL[.gz] with a "
        "'text' "
        "field (a BEIR queries file); a dev share is held out (default: none; then --doc-queries is needed)",
    )
    d.add_argument(
        "--doc-queries", type=int, default=0, help="also use N documents as pseudo-queries (default: 0, none)"
    )
    d.add_argument(
        "--out", required=True, help="the folder to write the IVF-PQ index into (new or empty) (required)"
    )
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an index already in --out (default: refuse a non-empty --out)",
    )
    d.add_argument(
        "--nlist", type=int, default=None, help="IVF lists (default: DenseIndex's choice for the corpus size)"
    )
    d.add_argument(
        "--pq-m", type=int, default=None, help="PQ sub-quantisers, bytes a vector at 8 bits (default: ditto)"
    )
    d.add_argument("--pq-nbits", type=int, default=None, help="bits per PQ code (default: ditto)")
    d.add_argument(
        "--nprobe", type=int, default=16, help="lists probed per query, in training and when searched"
    )
    d.add_argument("--epochs", type=int, default=10, help="passes over the training queries")
    d.add_argument("--lr", type=float, default=3e-4, help="Adam's learning rate on centroids and codewords")
    d.add_argument(
        "--temperature", type=float, default=0.05, help="softmax temperature of the distillation KL"
    )
    d.add_argument("--ivf-weight", type=float, default=0.0, help="weight of the coarse-centroid term")
    d.add_argument(
        "--dev-fraction", type=float, default=0.2, help="share of the queries held out to choose the epoch"
    )
    d.add_argument(
        "--seed", type=int, default=0, help="seed of k-means, the dev split and the negatives (default: 0)"
    )
    d.add_argument("--quiet", action="store_true", help="no per-epoch lines (default: show them)")
    d.set_defaults(func=_distill_pq)

    i = sub.add_parser(
        "info",
        help="describe an index directory (manifest, files, sizes)",
        description="Describe a saved index as JSON: kind, documents, encoder, query encoder (an "
        "inference-free sparse index's IDF query side; none where --model encodes queries too), settings, "
        "files and sizes.",
        epilog=_INFO_EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    i.add_argument("path", help="the index folder (the one holding manifest.json)")
    i.add_argument(
        "--load",
        action="store_true",
        help="also load the index and count its documents, and name its query encoder where that is "
        "not the index's encoder (default: manifest only)",
    )
    i.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``distilir-index``; returns the exit status: 0, or 2 with one ``error:`` line on stderr
    when nothing usable was produced (a bad corpus, an --out it must not replace, a model that is not
    on this machine, ...)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from distilir_index.base import IndexError_
    from distilir_index.models import ModelNotAvailable

    try:
        return int(args.func(args) or 0)
    except (IndexError_, ModelNotAvailable, OSError, ValueError) as exc:
        print(f"distilir-index {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
