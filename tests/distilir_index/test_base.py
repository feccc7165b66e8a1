"""The artifact format: manifest as atomic commit point, generations, clean-up of leftovers."""

import json

import pytest
from distilir_index.base import FORMAT, ArtifactDir, CorpusFingerprint, ManifestError, read_manifest


def _save(path, payload: str, kind="dense"):
    with ArtifactDir(path, kind=kind) as art:
        art.write("data", "data.txt", lambda p: p.write_text(payload))
        return art.commit(settings={"x": 1}, corpus={"count": 1, "fingerprint": "sha256:0"})


def test_commit_writes_manifest_and_named_files(tmp_path):
    manifest = _save(tmp_path / "idx", "one")
    assert manifest["format"] == FORMAT and manifest["generation"] == 1
    assert (tmp_path / "idx" / manifest["files"]["data"]).read_text() == "one"
    assert read_manifest(tmp_path / "idx", kind="dense") == manifest


def test_new_generation_replaces_old_files(tmp_path):
    first = _save(tmp_path / "idx", "one")
    second = _save(tmp_path / "idx", "two")
    assert second["generation"] == 2
    names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert names == sorted(["manifest.json", second["files"]["data"]])
    assert first["files"]["data"] not in names


def test_aborted_save_keeps_previous_generation(tmp_path):
    first = _save(tmp_path / "idx", "one")
    with pytest.raises(RuntimeError):
        with ArtifactDir(tmp_path / "idx", kind="dense") as art:
            art.write("data", "data.txt", lambda p: p.write_text("half"))
            raise RuntimeError("killed before commit")
    manifest = read_manifest(tmp_path / "idx")
    assert manifest == first
    assert (tmp_path / "idx" / manifest["files"]["data"]).read_text() == "one"
    assert len(list((tmp_path / "idx").iterdir())) == 2


def test_read_manifest_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path / "empty")
    _save(tmp_path / "idx", "one", kind="bm25")
    with pytest.raises(ManifestError, match="'bm25' index, not a 'dense'"):
        read_manifest(tmp_path / "idx", kind="dense")
    bad = tmp_path / "other"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ManifestError, match="format"):
        read_manifest(bad)


def test_missing_data_file_is_reported(tmp_path):
    manifest = _save(tmp_path / "idx", "one")
    (tmp_path / "idx" / manifest["files"]["data"]).unlink()
    with pytest.raises(ManifestError, match="missing"):
        read_manifest(tmp_path / "idx")


def test_corpus_fingerprint_is_order_independent_and_content_sensitive():
    docs = [("a", "x"), ("b", "y"), ("c", "z")]
    f1, f2, f3 = CorpusFingerprint(), CorpusFingerprint(), CorpusFingerprint()
    for d in docs:
        f1.update(*d)
    for d in reversed(docs):
        f2.update(*d)
    for d in [("a", "x"), ("b", "y"), ("c", "changed")]:
        f3.update(*d)
    assert f1.hexdigest() == f2.hexdigest() and f1.count == 3
    assert f1.hexdigest() != f3.hexdigest()


def test_a_save_removes_only_files_of_the_index(tmp_path):
    """Old generations and leftovers of an interrupted save go; a file the index did not write stays,
    even one named like a generation file."""
    folder = tmp_path / "idx"
    folder.mkdir()
    foreign = ["notes.txt", "photo.g2.jpg", "data.g2.csv", "other.g1.txt"]
    for name in foreign:
        (folder / name).write_text("mine")
    first = _save(folder, "one")
    (folder / "data.g7.txt.partial").write_text("left by a killed save")
    (folder / "data.g8.txt").write_text("written, never committed")
    second = _save(folder, "two")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["manifest.json", second["files"]["data"], *foreign])
    assert first["files"]["data"] not in names
