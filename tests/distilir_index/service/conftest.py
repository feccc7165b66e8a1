"""Fixtures of the service tests: small real indexes over SciFact and live uvicorn servers on loopback.

The servers are real: uvicorn on 127.0.0.1, on a port the OS picks, in a background thread; tests
talk to them over HTTP with httpx. Every loop is bounded and every server stops at teardown.
"""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

N_DOCS = 120
#: Abstracts are cut to this many characters so that encoding the test corpus stays quick on 2 cores.
MAX_CHARS = 300


def read_docs(data_dir: Path, n: int = N_DOCS) -> list[dict]:
    """The first ``n`` SciFact documents (abstracts cut to MAX_CHARS), with metadata to filter on."""
    docs = []
    with gzip.open(data_dir / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            row = json.loads(line)
            docs.append(
                {
                    "id": row["_id"],
                    "text": f"{row['title']} {row['text'][:MAX_CHARS]}".strip(),
                    "metadata": {"title": row["title"], "n": i, "parity": "even" if i % 2 == 0 else "odd"},
                }
            )
    return docs


def read_queries(data_dir: Path, n: int = 12) -> list[str]:
    with gzip.open(data_dir / "scifact" / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in itertools.islice(f, n)]


@contextmanager
def live_server(app, timeout: float = 120.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the server stopped during startup (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start within {timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def serve():
    """The :func:`live_server` context manager, for tests to start servers of their own."""
    return live_server


@pytest.fixture(scope="session")
def docs(data_dir) -> list[dict]:
    return read_docs(data_dir)


@pytest.fixture(scope="session")
def queries(data_dir) -> list[str]:
    return read_queries(data_dir)


@pytest.fixture(scope="session")
def bm25_path(tmp_path_factory, docs) -> Path:
    from distilir_index.bm25 import BM25Index

    index = BM25Index()
    index.add([d["id"] for d in docs], [d["text"] for d in docs], metadata=[d["metadata"] for d in docs])
    return index.save(tmp_path_factory.mktemp("service") / "bm25")


@pytest.fixture(scope="session")
def dense_encoder(minilm):
    from distilir_index.encoders import DenseEncoder

    return DenseEncoder(minilm)


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory, docs, dense_encoder) -> Path:
    from distilir_index.dense import DenseIndex

    index = DenseIndex(dense_encoder)
    index.add([d["id"] for d in docs], [d["text"] for d in docs], metadata=[d["metadata"] for d in docs])
    return index.save(tmp_path_factory.mktemp("service") / "dense")


@pytest.fixture(scope="session")
def hybrid_path(tmp_path_factory, bm25_path, dense_path, dense_encoder) -> Path:
    """BM25 + dense fused by reciprocal rank fusion, saved as one hybrid index."""
    from distilir_index.bm25 import BM25Index
    from distilir_index.dense import DenseIndex
    from distilir_index.hybrid import HybridIndex

    hybrid = HybridIndex(BM25Index.load(bm25_path), DenseIndex.load(dense_path, encoder=dense_encoder))
    return hybrid.save(tmp_path_factory.mktemp("service") / "hybrid")


@pytest.fixture(scope="session")
def reranker(minilm_path):
    """A cross-encoder of the MiniLM-L6 shape with an untrained head (no trained cross-encoder ships
    offline): the service must order documents by whatever scores it gives."""
    import torch
    from sentence_transformers import CrossEncoder

    with torch.random.fork_rng():  # a seeded head, without touching the session's RNG state
        torch.manual_seed(0)
        return CrossEncoder(minilm_path, num_labels=1, device="cpu")
