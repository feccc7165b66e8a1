"""Finding datasets: data folder, register_local, ir_datasets ids (offline: fast, instructive failures).

ir_datasets reads $IR_DATASETS_HOME when it is imported, so its tests run in a subprocess with their own
home under tmp_path (and a proxy that refuses connections, so "offline" does not depend on the network).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from distilir.data import (
    BeirDataset,
    DatasetError,
    load_dataset,
    register_local,
    registered_datasets,
    registry_path,
    resolve_data_dir,
    unregister_local,
)
from distilir.data import registry as registry_module


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """$DISTILIR_HOME in tmp_path and an empty in-process registry."""
    home = tmp_path / "distilir-home"
    monkeypatch.setenv("DISTILIR_HOME", str(home))
    monkeypatch.setattr(registry_module, "_IN_PROCESS", {})
    return home


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "from-env"
    monkeypatch.delenv("DISTILIR_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir() == tmp_path / "data"


def test_load_by_name_from_env_arg_and_path(data_dir, monkeypatch, isolated_home):
    monkeypatch.setenv("DISTILIR_DATA_DIR", str(data_dir))
    by_env = load_dataset("time")
    by_arg = load_dataset("time", data_dir=data_dir)
    by_path = load_dataset(str(data_dir / "time"))
    for ds in (by_env, by_arg, by_path):
        assert isinstance(ds, BeirDataset) and ds.name == "time" and ds.path == (data_dir / "time").resolve()
    assert len(by_env.qrels("test")) == 82


def test_unknown_name_lists_what_was_tried_and_what_exists(data_dir, isolated_home, monkeypatch):
    monkeypatch.delenv("DISTILIR_DATA_DIR", raising=False)
    with pytest.raises(DatasetError) as err:
        load_dataset("./scifactt", data_dir=data_dir)  # looks like a path: ir_datasets is not consulted
    message = str(err.value)
    assert "'./scifactt' not found" in message
    assert "registered ids" in message and str(data_dir / "./scifactt") in message
    assert "'scifact'" in message and "'vaswani'" in message  # the available names
    assert "the data_dir argument" in message


def test_missing_data_dir_is_reported(tmp_path, isolated_home, monkeypatch):
    monkeypatch.delenv("DISTILIR_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match=r"\(that folder does not exist\)"):
        load_dataset("./x", data_dir=tmp_path / "no-data-here")


def test_register_local_copy_of_time(tmp_path, data_dir, isolated_home):
    copy = shutil.copytree(data_dir / "time", tmp_path / "time-copy")
    folder = register_local("beir/time-test", copy)
    assert folder == Path(copy).resolve()

    ds = load_dataset("beir/time-test")
    assert isinstance(ds, BeirDataset) and ds.name == "beir/time-test"
    assert len(ds.corpus()) == 423 and len(ds.queries("test")) == 82

    # persisted: a fresh process (simulated by emptying the in-process registry) still resolves it
    file = registry_path()
    assert file == isolated_home / "distilir_datasets.json"
    saved = json.loads(file.read_text())
    assert saved["format"] == "distilir-datasets/1"
    assert saved["datasets"]["beir/time-test"]["path"] == str(folder)
    registry_module._IN_PROCESS.clear()
    assert registered_datasets() == {"beir/time-test": folder}
    assert load_dataset("beir/time-test").doc_count() == 423

    assert unregister_local("beir/time-test") is True
    assert registered_datasets() == {}


def test_register_local_rejects_non_beir_folders_and_bad_ids(tmp_path, isolated_home):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a complete BEIR folder"):
        register_local("x/y", tmp_path / "empty")
    with pytest.raises(DatasetError, match="without spaces"):
        register_local("has space", tmp_path / "empty")


def test_registered_folder_that_vanished(tmp_path, data_dir, isolated_home):
    copy = shutil.copytree(data_dir / "time", tmp_path / "gone")
    register_local("gone", copy)
    shutil.rmtree(copy)
    with pytest.raises(DatasetError, match="no longer exists"):
        load_dataset("gone")


def _python(code: str, tmp_path: Path, **env: str) -> dict:
    full_env = {**os.environ, **env, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=300,  # a guard against a hang, not a timing check
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def test_ir_datasets_ids_fail_fast_and_say_how_to_fix_it(tmp_path):
    result = _python(
        """
        import json
        from distilir.data import DatasetError, IrDatasetsDataset, load_dataset
        out = {}
        for key, call in [("unavailable", lambda: load_dataset("beir/scifact/test")),
                          ("typo", lambda: IrDatasetsDataset("beir/scifactt/test")),
                          ("unknown", lambda: load_dataset("no-such-collection"))]:
            try:
                call()
                out[key] = None
            except DatasetError as exc:
                out[key] = str(exc)
        print(json.dumps(out))
        """,
        tmp_path,
        IR_DATASETS_HOME=str(tmp_path / "irds-home"),
        DISTILIR_DATA_DIR=str(tmp_path / "no-data"),
        DISTILIR_HOME=str(tmp_path / "home"),
        **OFFLINE,
    )
    unavailable = result["unavailable"]
    assert unavailable is not None
    assert "could not provide the queries of 'beir/scifact/test'" in unavailable
    assert str(tmp_path / "irds-home" / "beir") in unavailable and "IR_DATASETS_HOME" in unavailable
    assert "register_local('beir/scifact/test'" in unavailable
    assert "not an ir_datasets id" in result["typo"] and "beir/scifact/test" in result["typo"]
    assert (
        "'no-such-collection' not found" in result["unknown"]
        and "ir_datasets ids: not one" in result["unknown"]
    )


def test_ir_datasets_records_map_to_our_types(tmp_path, data_dir):
    """The real ir_datasets code path, offline: its cache is filled with a zip of the shared SciFact files
    (the layout of the BEIR download), then our loader must give what the BEIR folder gives."""
    zip_path = tmp_path / "irds-home" / "beir" / "scifact" / "source.zip"
    zip_path.parent.mkdir(parents=True)
    src = data_dir / "scifact"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in ("corpus", "queries"):
            with gzip.open(src / f"{name}.jsonl.gz", "rb") as f:
                zf.writestr(f"scifact/{name}.jsonl", f.read())
        for split in ("test", "train"):
            zf.write(src / "qrels" / f"{split}.tsv", f"scifact/qrels/{split}.tsv")
    result = _python(
        """
        import json
        from distilir.data import IrDatasetsDataset, load_dataset
        ds = load_dataset("beir/scifact/test")
        docs = ds.corpus()
        print(json.dumps({
            "type": type(ds).__name__, "name": ds.name, "splits": ds.splits(),
            "queries": {q.id: q.text for q in ds.queries("test").values()},
            "qrels": ds.qrels("test"), "n_docs": len(docs),
            "doc": [docs["4983"].id, docs["4983"].title, docs["4983"].text],
            "config": ds.get_config_dict(),
        }))
        """,
        tmp_path,
        IR_DATASETS_HOME=str(tmp_path / "irds-home"),
        DISTILIR_DATA_DIR=str(tmp_path / "no-data"),
        DISTILIR_HOME=str(tmp_path / "home"),
        **OFFLINE,
    )
    beir = BeirDataset(src)
    assert result["type"] == "IrDatasetsDataset" and result["name"] == "beir/scifact/test"
    assert result["splits"] == ["test"]
    assert result["config"]["kind"] == "ir_datasets" and result["config"]["split"] == "test"
    assert result["qrels"] == beir.qrels("test")
    assert result["queries"] == {q.id: q.text for q in beir.queries("test").values()}
    assert result["n_docs"] == 5183
    doc = beir.corpus()["4983"]
    assert result["doc"] == [doc.id, doc.title, doc.text]
