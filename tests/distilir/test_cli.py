"""The `distilir` command end to end, in-process, on a small real collection (TIME, 423 docs)."""

import json

import pytest

from distilir.cli import main
from distilir.data import load_dataset
from distilir.data.trec import read_run
from distilir.evaluation import evaluate


@pytest.fixture()
def env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_data_info_prints_counts(env, capsys):
    assert main(["data", "info", "scifact"]) == 0
    out = capsys.readouterr().out
    assert "documents: 5183" in out and "train" in out and "809" in out


def test_data_info_unknown_dataset_is_a_clear_error(env, capsys):
    assert main(["data", "info", "no-such-collection"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "scifact" in err  # lists what is available


def test_eval_bm25_saves_a_run_that_evaluates_identically(env, capsys, data_dir):
    run_file = env / "bm25.trec"
    assert (
        main(
            [
                "eval",
                "--dataset",
                "time",
                "--retriever",
                "bm25",
                "--save-run",
                str(run_file),
                "--per-query",
                str(env / "pq.json"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    ndcg_printed = float(printed.split("\n")[2].split()[4])
    ds = load_dataset("time", data_dir=data_dir)
    ref = evaluate(read_run(run_file), ds.qrels("test"), measures=("nDCG@10",))
    assert ndcg_printed == pytest.approx(ref.aggregate["nDCG@10"], abs=5e-5)
    assert set(json.loads((env / "pq.json").read_text())) == set(ds.qrels("test"))
    # evaluating the saved run through the CLI prints the same figure
    assert main(["eval", "--dataset", "time", "--run", str(run_file)]) == 0
    assert float(capsys.readouterr().out.split("\n")[2].split()[4]) == ndcg_printed


def test_candidates_then_teach_builds_a_store_with_provenance(env, capsys):
    cands = env / "cands.trec"
    assert (
        main(
            [
                "candidates",
                "--dataset",
                "time",
                "--split",
                "test",
                "--retriever",
                "bm25",
                "--depth",
                "5",
                "--out",
                str(cands),
            ]
        )
        == 0
    )
    manifest = json.loads((env / "cands.trec.manifest.json").read_text())
    assert manifest["depth"] == 5 and manifest["retriever"]["retriever"] == "bm25"
    run = read_run(cands)
    assert all(len(v) == 5 for v in run.values()) and len(run) == 82
    store = env / "store"
    assert (
        main(
            [
                "teach",
                "--dataset",
                "time",
                "--candidates",
                str(cands),
                "--teacher",
                "bm25",
                "--out",
                str(store),
            ]
        )
        == 0
    )
    assert "scored 410 pairs" in capsys.readouterr().out
    # a second run resumes and scores nothing
    assert (
        main(
            [
                "teach",
                "--dataset",
                "time",
                "--candidates",
                str(cands),
                "--teacher",
                "bm25",
                "--out",
                str(store),
            ]
        )
        == 0
    )
    assert "scored 0 pairs, 410 already stored" in capsys.readouterr().out
    info = json.loads((store / "manifest.json").read_text())
    assert info["candidates"][0]["candidates"] == str(cands) and info["candidates"][0]["depth"] == 100
