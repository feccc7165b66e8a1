"""What a newcomer meets on bad input: every case refused with a way forward, a non-zero exit when
nothing usable was produced, and nothing half-written. Through the `distilir` entry point, on small
real collections (cranfield 1,400 docs, TIME 423 docs) and folders made from them."""

import gzip
import json
import shutil

import pytest

from distilir.cli import main


@pytest.fixture()
def env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _copy(data_dir, name, dest):
    """A writable copy of a collection folder, to break in one way."""
    shutil.copytree(data_dir / name, dest)
    return dest


def _scored(env, depth=3):
    """TIME's test queries, their BM25 top ``depth`` scored by the BM25 teacher, through the CLI."""
    cands = env / "c.jsonl"
    assert (
        main(
            ["candidates", "--dataset", "time", "--split", "test", "--depth", str(depth), "--out", str(cands)]
        )
        == 0
    )
    return cands, _teach(env, cands)


def _teach(env, cands):
    """``distilir teach`` of ``cands`` with the BM25 teacher into env/s."""
    store = env / "s"
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
    return store


def _no_queries(data_dir, tmp_path):
    folder = _copy(data_dir, "cranfield", tmp_path / "emptyq")
    (folder / "queries.jsonl.gz").unlink()
    (folder / "queries.jsonl").write_text("")
    return folder


def test_eval_on_an_empty_queries_file_is_an_error_not_a_table_of_zeros(env, data_dir, capsys):
    folder = _no_queries(data_dir, env)
    assert main(["eval", "--dataset", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "nothing to retrieve" in captured.err and "distilir data validate" in captured.err
    assert "0.0000" not in captured.out


def test_candidates_without_queries_writes_nothing_and_fails(env, data_dir, capsys):
    folder = _no_queries(data_dir, env)
    out = env / "cands.jsonl"
    assert main(["candidates", "--dataset", str(folder), "--split", "test", "--out", str(out)]) == 2
    assert "nothing written" in capsys.readouterr().err
    assert not out.exists() and not (env / "cands.jsonl.manifest.json").exists()


def test_a_run_of_another_collection_is_refused(env, capsys):
    run = env / "cranfield.run"
    assert main(["eval", "--dataset", "cranfield", "--k", "50", "--save-run", str(run)]) == 0
    capsys.readouterr()
    # with its manifest: the recorded dataset is named
    assert main(["eval", "--dataset", "time", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "made from dataset 'cranfield'" in err and "--dataset cranfield" in err
    # without it (a run file from elsewhere): its document ids give it away
    (env / "cranfield.run.manifest.json").unlink()
    assert main(["eval", "--dataset", "time", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not in the corpus of time" in err and "another collection" in err


def test_eval_leaves_out_cutoffs_deeper_than_the_run(env, capsys):
    assert main(["eval", "--dataset", "time", "--k", "10"]) == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0]
    assert "nDCG@10" in header and "R@100" not in header and "R@1000" not in header
    assert "R@100, R@1000 left out" in captured.err and "deeper than the 10 hits" in captured.err


def test_teach_refuses_candidates_of_another_dataset_even_when_ids_overlap(env, capsys):
    # TIME's query and document ids are all valid cranfield ids: only the manifest can tell
    cands = env / "time.jsonl"
    assert (
        main(["candidates", "--dataset", "time", "--split", "test", "--depth", "5", "--out", str(cands)]) == 0
    )
    capsys.readouterr()
    store = env / "store"
    code = main(
        [
            "teach",
            "--dataset",
            "cranfield",
            "--candidates",
            str(cands),
            "--teacher",
            "bm25",
            "--out",
            str(store),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "made from dataset 'time'" in err and "given is 'cranfield'" in err and "--dataset time" in err
    assert not store.exists()


def test_data_validate_exit_codes(env, data_dir, capsys):
    assert main(["data", "validate", "scifact"]) == 0
    assert "OK" in capsys.readouterr().out
    # ArguAna's five qrels to missing documents: a warning, usable (exit 0), unless --strict
    assert main(["data", "validate", "arguana"]) == 0
    assert "5 qrels point to documents that are not in the corpus" in capsys.readouterr().out
    assert main(["data", "validate", "arguana", "--strict"]) == 1
    capsys.readouterr()
    assert main(["data", "validate", str(_no_queries(data_dir, env)), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {i["kind"]: i["severity"] for i in report["issues"]}["no_queries"] == "error"


def test_qrels_naming_unknown_documents_are_reported_by_validate_info_and_eval(env, data_dir, capsys):
    folder = _copy(data_dir, "time", env / "time-bad")
    qrels = folder / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines()
    first_q = lines[1].split("\t")[0]
    qrels.write_text("\n".join([*lines, f"{first_q}\tno-such-doc\t1"]) + "\n")
    assert main(["data", "validate", str(folder)]) == 0
    assert f"{first_q}->no-such-doc" in capsys.readouterr().out
    assert main(["data", "info", str(folder)]) == 0
    assert "1 qrels point to documents that are not in the corpus" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(folder), "--k", "100"]) == 0
    assert "warning: split 'test': 1 qrels point to documents" in capsys.readouterr().err


def test_interrupted_teach_leaves_no_empty_store_and_says_how_to_resume(env, capsys, monkeypatch):
    from distilir.teachers.store import TeacherStore

    cands = env / "c.jsonl"
    assert (
        main(["candidates", "--dataset", "time", "--split", "test", "--depth", "5", "--out", str(cands)]) == 0
    )

    def ctrl_c(*args, **kwargs):  # Ctrl-C before the first batch is committed
        raise KeyboardInterrupt

    monkeypatch.setattr(TeacherStore, "score", ctrl_c)
    store = env / "store"
    argv = [
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
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and str(store) in err
    assert "before the first batch was committed: no store left" in err
    assert not store.exists()  # the empty store bound to this teacher is gone
    monkeypatch.undo()
    assert main(argv) == 0  # and the same command then works
    assert len(TeacherStore.open(store)) == 5 * 82


def test_a_store_of_the_same_teacher_name_with_other_settings_names_the_difference(env, capsys):
    cands = env / "c.jsonl"
    assert (
        main(["candidates", "--dataset", "time", "--split", "test", "--depth", "3", "--out", str(cands)]) == 0
    )
    base = ["teach", "--dataset", "time", "--candidates", str(cands), "--out", str(env / "store")]
    assert main([*base, "--teacher", "bm25?k1=0.9"]) == 0
    capsys.readouterr()
    assert main([*base, "--teacher", "bm25?k1=1.5"]) == 2
    err = capsys.readouterr().err
    assert "settings that differ (stored -> given)" in err and "k1: 0.9 -> 1.5" in err


def test_a_store_used_with_another_collection_names_the_one_it_was_scored_on(env, capsys):
    from distilir.data import load_dataset
    from distilir.teachers.store import TeacherStore

    cands, store = _scored(env)
    other = load_dataset("cranfield")  # ids overlap with TIME's, texts do not
    queries = {q: v.text for q, v in other.queries(None).items()}
    docs = {d: doc.full_text for d, doc in other.corpus().items()}
    store = TeacherStore.open(store)
    with pytest.raises(ValueError, match="this store was scored on time"):
        list(store.iter_lists(queries, docs))


def test_an_unresolvable_model_name_is_one_line_not_a_traceback(env, capsys):
    assert main(["eval", "--dataset", "time", "--retriever", "dense", "--model", "no-such-model-xyz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilir: error:") and "Traceback" not in err
    assert "all-MiniLM-L6-v2" in err  # the packaged names are listed


def test_library_warnings_print_as_one_cli_line(env, data_dir, capsys):
    folder = _copy(data_dir, "time", env / "time-q")
    rows = [json.loads(line) for line in gzip.open(folder / "queries.jsonl.gz", "rt")]
    (folder / "queries.jsonl.gz").unlink()
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows[1:])
    )  # one judged query gone
    assert main(["eval", "--dataset", str(folder), "--k", "100"]) == 0
    err = capsys.readouterr().err
    assert "distilir: warning:" in err and "have no text in the queries file" in err
    assert "warnings.warn" not in err and "if not ds.queries" not in err


def test_training_on_another_dataset_than_the_store_names_both(env, capsys):
    from distilir.training.config import ConfigError, DataConfig
    from distilir.training.lists import load_training_lists

    cands, store = _scored(env)
    with pytest.raises(ConfigError, match="was scored on time") as err:
        load_training_lists(DataConfig(teacher_store=str(store), dataset="cranfield", split="test"))
    assert "data.dataset: time" in str(err.value)
    lists, _, _ = load_training_lists(DataConfig(teacher_store=str(store), dataset="time", split="test"))
    assert len(lists) == 82
    with pytest.raises(ValueError, match="made from dataset 'cranfield'"):  # candidates of another dataset
        c2 = env / "cran.jsonl"
        assert (
            main(
                ["candidates", "--dataset", "cranfield", "--split", "test", "--depth", "3", "--out", str(c2)]
            )
            == 0
        )
        load_training_lists(
            DataConfig(teacher_store=str(store), dataset="time", split="test", candidates=str(c2))
        )


def test_train_query_encoder_on_a_missing_index_is_one_line(env, capsys):
    cands, store = _scored(env)
    capsys.readouterr()
    argv = ["train-query-encoder", "--dataset", "time", "--split", "test", "--index", str(env / "no-index")]
    assert main([*argv, "--teacher-store", str(store), "--out", str(env / "qs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilir: error:") and "does not exist" in err and "Traceback" not in err


def test_training_on_a_partly_scored_store_warns(env, capsys):
    from distilir.training.config import DataConfig
    from distilir.training.lists import load_training_lists

    cands = env / "c.jsonl"
    assert (
        main(["candidates", "--dataset", "time", "--split", "test", "--depth", "3", "--out", str(cands)]) == 0
    )
    lines = cands.read_text().splitlines()
    first = sorted({ln.split()[0] for ln in lines})[:10]
    cands.write_text("".join(ln + "\n" for ln in lines if ln.split()[0] in first))  # an interrupted scoring
    store = _teach(env, cands)
    with pytest.warns(UserWarning, match="holds lists for 10 of the 82 queries"):
        lists, _, _ = load_training_lists(DataConfig(teacher_store=str(store), dataset="time", split="test"))
    assert len(lists) == 10


def test_synthetic_queries_get_candidates_and_teacher_scores_from_the_cli(env, capsys):
    # a collection without training queries: its generated queries go through candidates and teach too
    q = env / "q"
    assert (
        main(
            [
                "queries",
                "generate",
                "--dataset",
                "time",
                "--generator",
                "crop?per_doc=1",
                "--max-docs",
                "20",
                "--out",
                str(q),
            ]
        )
        == 0
    )
    cands = env / "c.trec"
    assert (
        main(["candidates", "--dataset", "time", "--queries", str(q), "--depth", "5", "--out", str(cands)])
        == 0
    )
    assert "20 queries, 100 candidates" in capsys.readouterr().out
    manifest = json.loads((env / "c.trec.manifest.json").read_text())
    assert manifest["split"] == "synthetic" and manifest["queries_store"] == str(q)
    store = env / "s"
    argv = [
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
    assert main(argv) == 2  # without the query store their ids are unknown, said so
    assert "not queries of time" in capsys.readouterr().err
    assert main([*argv, "--queries", str(q)]) == 0
    from distilir.teachers.store import TeacherStore

    assert len(TeacherStore.open(store)) == 100
