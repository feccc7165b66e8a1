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
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from distilir_index.loading import registered_index_kinds

__all__ = ["iter_corpus", "main", "resolve_corpus"]

_ID_FIELDS = ("_id", "id", "docid", "doc_id")


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
    """Yield ``(doc_id, text, metadata)`` from a corpus (see the module docstring)."""
    file = resolve_corpus(str(spec))
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        n = 0
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            if limit is not None and n >= limit:
                return
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file}:{line_no}: not valid JSON ({exc})") from exc
            doc_id = next((row.pop(k) for k in _ID_FIELDS if k in row), None)
            if doc_id is None:
                raise ValueError(f"{file}:{line_no}: no document id; expected one of the fields {_ID_FIELDS}")
            title = row.get("title") or ""
            body = row.pop("text", "") or ""
            text = f"{title} {body}".strip() if title else body
            n += 1
            yield str(doc_id), text, row


def _make_index(args: argparse.Namespace) -> Any:
    from distilir_index.loading import make_index

    settings: dict[str, Any] = {"store_text": not args.no_text}
    if args.kind == "bm25":
        settings["show_progress"] = False
    else:
        if args.model is None:
            raise SystemExit(
                f"--kind {args.kind} needs --model (a hub id, a local folder or a packaged name "
                "such as all-MiniLM-L6-v2 / splade-tiny)"
            )
        settings.update(model=args.model, batch_size=args.batch_size)
        if args.kind == "dense":
            settings["factory"] = args.factory or "flat"
    return make_index(args.kind, **settings)


def _build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.factory and args.kind != "dense":
        raise SystemExit("--factory applies to --kind dense only (a FAISS index factory string)")
    start = time.perf_counter()
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
    print(json.dumps({"out": str(out), "kind": args.kind, "documents": total, "seconds": round(took, 2)}))
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from distilir_index.service.app import create_app
    from distilir_index.service.settings import ServiceSettings

    overrides: dict[str, Any] = {}
    if args.index:
        overrides["indexes"] = _parse_index_specs(args.index)
    for field in (
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
    ):
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
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


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
        "settings": manifest.get("settings"),
        "corpus": manifest.get("corpus"),
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
    }
    if args.load:
        from distilir_index.retriever import Retriever

        retriever = Retriever.load(path)
        summary["loaded"] = {"class": type(retriever.index).__name__, "count": len(retriever)}
    json.dump(summary, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distilir-index",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build an index from a corpus")
    b.add_argument("--corpus", required=True, help="BEIR folder, corpus.jsonl[.gz] file, or dataset name")
    b.add_argument(
        "--kind",
        required=True,
        choices=registered_index_kinds(),
        help="index kind (distilir_index.loading.INDEXES); bm25, dense and sparse build from a corpus alone",
    )
    b.add_argument("--model", help="encoder for dense/sparse: hub id, folder, or packaged name")
    b.add_argument("--out", required=True, help="index directory to write (saved atomically)")
    b.add_argument(
        "--factory", help="--kind dense: flat (default), hnsw, ivfpq, sq8, or any FAISS factory string"
    )
    b.add_argument("--batch-size", type=int, default=64, help="encoder batch size (default 64)")
    b.add_argument("--chunk-size", type=int, default=2048, help="documents per add() call (default 2048)")
    b.add_argument("--limit", type=int, help="index only the first N documents")
    b.add_argument("--no-text", action="store_true", help="do not store document texts in the index")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    s = sub.add_parser("serve", help="serve indexes over HTTP (see distilir_index.service)")
    s.add_argument("--index", action="append", metavar="NAME=PATH", help="an index to serve (repeatable)")
    s.add_argument(
        "--query-encoder",
        action="append",
        metavar="NAME=MODEL",
        help="encode the queries of index NAME with MODEL (the same encoder, or a query-side student "
        "trained against an index of that encoder; anything else is refused at startup)",
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", help="require this key (Authorization: Bearer or X-API-Key)")
    s.add_argument("--max-k", type=int)
    s.add_argument("--max-batch", type=int)
    s.add_argument("--max-body-bytes", type=int)
    s.add_argument("--batch-wait-ms", type=float, help="micro-batching window; 0 turns batching off")
    s.add_argument("--batch-concurrency", type=int, help="micro-batches that may run at once")
    s.add_argument("--torch-threads", type=int, help="torch intra-op threads (1 suits small shared machines)")
    s.add_argument(
        "--encoder-backend",
        choices=["auto", "torch", "onnx"],
        help="how dense query encoders run (default auto)",
    )
    s.add_argument(
        "--query-quantization",
        choices=["int8"],
        help="encode queries with the int8 dynamically quantised model (faster; cost in the benchmarks)",
    )
    s.add_argument("--encoder-threads", type=int, help="ONNX Runtime threads per query batch (default 1)")
    s.add_argument("--rerank-model", help="cross-encoder for /v1/rerank")
    s.add_argument("--embedding-model", help="sentence-transformers model for /v1/embeddings")
    s.add_argument("--cors", action="append", metavar="ORIGIN", help="allowed browser origin (repeatable)")
    s.add_argument(
        "--allow-reload-overrides",
        action="store_true",
        help="let POST /v1/indexes/{name}/reload name another path (under --reload-root) or model",
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
    s.add_argument("--log-level", default="info")
    s.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    s.set_defaults(func=_serve)

    i = sub.add_parser("info", help="describe an index directory (manifest, files, sizes)")
    i.add_argument("path")
    i.add_argument("--load", action="store_true", help="also load the index and count its documents")
    i.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from distilir_index.base import IndexError_

    try:
        return int(args.func(args) or 0)
    except (IndexError_, FileNotFoundError, ValueError) as exc:
        print(f"distilir-index {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
