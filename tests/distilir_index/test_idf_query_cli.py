"""The inference-free sparse query side as a user reaches it: ``distilir-index build --query-side idf``,
``distilir-index info``, what a Retriever says encodes its queries, and ``distilir_index.IDFQueryEncoder``.

Built once from the first 200 SciFact abstracts through ``distilir_index.cli.main``; the no-torch checks
run in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from distilir_index.base import read_manifest
from distilir_index.cli import build_parser, main
from distilir_index.idf_query import IDFQueryEncoder
from distilir_index.retriever import Retriever

LIMIT = 200
QUERY = "aspirin and heart attacks"


@pytest.fixture(scope="module")
def idf_dir(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "scifact-idf"
    argv = ["build", "--corpus", "scifact", "--kind", "sparse", "--model", "splade-tiny"]
    argv += ["--query-side", "idf", "--limit", str(LIMIT), "--batch-size", "16", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return out


def test_build_query_side_idf_writes_an_inference_free_index(idf_dir, capsys):
    manifest = read_manifest(idf_dir, kind="sparse")
    assert manifest["settings"]["query_side"] == "idf"
    assert manifest["query_encoder"]["kind"] == "idf" and manifest["query_encoder"]["documents"] == LIMIT
    assert manifest["encoder"]["vocab_size"] == manifest["query_encoder"]["vocab_size"]  # the SPLADE model
    assert {"query_tokenizer", "document_frequency", "idf"} <= set(manifest["files"])

    capsys.readouterr()
    assert main(["info", str(idf_dir), "--load"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["query_encoder"] == manifest["query_encoder"]
    assert info["settings"]["query_side"] == "idf"
    assert info["loaded"] == {"class": "SparseIndex", "count": LIMIT, "query_encoder": "IDFQueryEncoder"}


def test_retriever_reports_the_idf_query_side(idf_dir):
    retriever = Retriever.load(idf_dir)
    manifest = read_manifest(idf_dir)
    hits = retriever.search(QUERY, k=5)
    assert len(hits) == 5 and all(h.score > 0 for h in hits)
    assert isinstance(retriever.query_encoder, IDFQueryEncoder)
    assert retriever.query_encoder is retriever.index.query_encoder
    described = retriever.describe()
    assert described["query_encoder"] == manifest["query_encoder"] == retriever.query_encoder_description()
    assert described["encoder"] == manifest["encoder"]  # the document encoder, for adds and provenance
    json.dumps(described)


def test_the_same_index_searched_by_its_model_reports_the_model(idf_dir):
    """query_side="model" encodes queries with the SPLADE model: no separate query encoder to report."""
    retriever = Retriever.load(idf_dir, query_side="model")
    assert retriever.query_encoder is retriever.index.encoder and retriever.query_encoder is not None
    assert "query_encoder" not in retriever.describe()
    assert retriever.query_encoder_description() == retriever.encoder_description()


def test_query_side_flag_has_help_with_its_default_and_is_refused_off_sparse(capsys, tmp_path):
    args = build_parser().parse_args(["build", "--corpus", "c", "--kind", "sparse", "--out", "o"])
    assert args.query_side == "model"
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--query-side {model,idf}" in text and "(default: model)" in text and "--query-side idf" in text
    with pytest.raises(SystemExit, match="--query-side idf applies to --kind sparse only"):
        main(
            ["build", "--corpus", "cranfield", "--kind", "bm25", "--query-side", "idf"]
            + ["--out", str(tmp_path / "x"), "--quiet"]
        )
    assert not (tmp_path / "x").exists()


def test_info_and_search_import_no_torch(idf_dir):
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from distilir_index.cli import main
        from distilir_index.retriever import Retriever

        with contextlib.redirect_stdout(io.StringIO()) as printed:
            code = main(["info", "--load", {str(idf_dir)!r}])
        hits = Retriever.load({str(idf_dir)!r}).search({QUERY!r}, k=5)
        print(json.dumps({{
            "code": code,
            "info": json.loads(printed.getvalue()),
            "hits": [h.id for h in hits],
            "loaded": [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules],
        }}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["code"] == 0 and result["info"]["loaded"]["query_encoder"] == "IDFQueryEncoder"
    assert result["hits"] == [h.id for h in Retriever.load(idf_dir).search(QUERY, k=5)]


def test_idf_query_encoder_is_exported():
    import distilir_index

    assert distilir_index.__all__ == [
        "FORMAT",
        "INDEXES",
        "ArtifactDir",
        "BM25Index",
        "BaseIndex",
        "CorpusFingerprint",
        "DenseEncoder",
        "DenseIndex",
        "EncoderMismatch",
        "Hit",
        "HybridIndex",
        "IDFQueryEncoder",
        "Index",
        "IndexError_",
        "ManifestError",
        "Registry",
        "Retriever",
        "SparseEncoder",
        "SparseIndex",
        "__version__",
        "load_index",
        "make_index",
        "read_manifest",
        "register_index_kind",
        "resolve_model",
    ]
    assert distilir_index.IDFQueryEncoder is IDFQueryEncoder
    for name in distilir_index.__all__:
        assert getattr(distilir_index, name) is not None
