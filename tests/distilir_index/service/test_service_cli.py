"""``distilir-index build | info | serve``: real corpora in, real indexes out, a real server process."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from distilir_index.cli import iter_corpus, main, resolve_corpus
from distilir_index.retriever import Retriever


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_corpus_reading_beir_folder_file_and_name(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILIR_DATA_DIR", str(data_dir))
    assert resolve_corpus("cranfield") == data_dir / "cranfield" / "corpus.jsonl.gz"
    assert resolve_corpus(str(data_dir / "cranfield")) == data_dir / "cranfield" / "corpus.jsonl.gz"
    with gzip.open(data_dir / "cranfield" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    doc_id, text, meta = next(iter_corpus("cranfield"))
    assert (
        doc_id == first["_id"]
        and text == f"{first['title']} {first['text']}"
        and meta == {"title": first["title"]}
    )
    custom = tmp_path / "corpus.jsonl"
    custom.write_text(
        json.dumps({"_id": 7, "title": "", "text": "plain", "year": 2020, "tags": ["a"]}) + "\n\n"
    )
    assert list(iter_corpus(custom)) == [("7", "plain", {"title": "", "year": 2020, "tags": ["a"]})]
    with pytest.raises(FileNotFoundError, match="BEIR folder"):
        resolve_corpus(str(tmp_path / "nothing-here"))
    (tmp_path / "bad.jsonl").write_text('{"title": "no id"}\n')
    with pytest.raises(ValueError, match="no document id"):
        list(iter_corpus(tmp_path / "bad.jsonl"))


def test_build_bm25_then_info(capsys, data_dir, monkeypatch, tmp_path):
    from distilir_index.bm25 import BM25Index

    monkeypatch.setenv("DISTILIR_DATA_DIR", str(data_dir))
    out = tmp_path / "cran-bm25"
    code, stdout, _ = run_cli(
        capsys,
        "build",
        "--corpus",
        "cranfield",
        "--kind",
        "bm25",
        "--out",
        str(out),
        "--limit",
        "300",
        "--quiet",
    )
    assert code == 0
    report = json.loads(stdout)
    assert report["documents"] == 300 and report["kind"] == "bm25"

    docs = list(iter_corpus("cranfield", limit=300))
    reference = BM25Index()
    reference.add([d[0] for d in docs], [d[1] for d in docs], metadata=[d[2] for d in docs])
    built = Retriever.load(out)
    for q in ["boundary layer heat transfer", "supersonic wing flutter"]:
        assert built.search(q, k=10) == reference.search([q], k=10)[0]

    code, stdout, _ = run_cli(capsys, "info", str(out), "--load")
    info = json.loads(stdout)
    assert code == 0 and info["kind"] == "bm25" and info["documents"] == 300
    assert info["loaded"] == {"class": "BM25Index", "count": 300}
    assert info["bytes"] == sum(f["bytes"] for f in info["files"].values()) > 0


def test_build_dense_with_a_factory(capsys, data_dir, minilm_path, tmp_path):
    out = tmp_path / "cran-dense"
    code, stdout, _ = run_cli(
        capsys,
        "build",
        "--corpus",
        str(data_dir / "cranfield"),
        "--kind",
        "dense",
        "--model",
        minilm_path,
        "--factory",
        "flat",
        "--limit",
        "12",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0 and json.loads(stdout)["documents"] == 12
    code, stdout, _ = run_cli(capsys, "info", str(out))
    info = json.loads(stdout)
    assert info["kind"] == "dense" and info["encoder"]["dimension"] == 384 and info["documents"] == 12
    retriever = Retriever.load(out)
    docs = list(iter_corpus(data_dir / "cranfield", limit=12))
    encoder = retriever.query_encoder
    scores = encoder.encode_documents([d[1] for d in docs]) @ encoder.encode_queries(["jet noise"])[0]
    order = np.argsort(-scores, kind="stable")[:5]
    assert [h.id for h in retriever.search("jet noise", k=5)] == [docs[i][0] for i in order]


def test_build_and_info_errors_are_explained(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "build", "--corpus", str(tmp_path / "none"), "--kind", "bm25", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "not found" in err
    with pytest.raises(SystemExit, match="needs --model"):
        main(["build", "--corpus", str(tmp_path), "--kind", "dense", "--out", str(tmp_path / "y")])
    code, _, err = run_cli(capsys, "info", str(tmp_path))
    assert code == 2 and "has no manifest.json" in err
    with pytest.raises(SystemExit, match="NAME=PATH"):
        main(["serve", "--index", "no-equals-sign"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_a_server_process(bm25_path, tmp_path):
    """`distilir-index serve` in its own process, on loopback; stopped at the end (bounded waits)."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distilir_index.cli",
            "serve",
            "--index",
            f"scifact={bm25_path}",
            "--port",
            str(port),
            "--api-key",
            "k1",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 120 s"
            time.sleep(0.2)
        r = httpx.post(f"{base}/v1/search", json={"query": "cancer", "k": 3}, headers={"X-API-Key": "k1"})
        assert r.status_code == 200
        expected = Retriever.load(bm25_path).search("cancer", k=3)
        assert [h["id"] for h in r.json()["hits"]] == [h.id for h in expected]
        assert httpx.post(f"{base}/v1/search", json={"query": "cancer"}).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
