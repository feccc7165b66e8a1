"""Finding datasets by name: the data folder, local registrations, and ir_datasets ids.

:func:`load_dataset` resolves a name in this order and uses the first that fits:

1. an id registered with :func:`register_local` (in this process, then in the registry file);
2. a path to a BEIR folder;
3. a folder of that name in the data folder (:func:`resolve_data_dir`);
4. an ``ir_datasets`` id (e.g. ``"beir/scifact/test"``, ``"msmarco-passage/trec-dl-2019/judged"``).

If none fits, the error lists everything that was tried and the names that are available.

The registry file is ``$DISTILIR_HOME/distilir_datasets.json`` when ``DISTILIR_HOME`` is set, else
``distilir_datasets.json`` in the data folder::

    {"format": "distilir-datasets/1",
     "datasets": {"<id>": {"path": "/abs/folder", "registered": "<ISO time>"}}}
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

from distilir.data._io import atomic_write
from distilir.data.base import BaseDataset, DatasetError, DatasetWarning
from distilir.data.beir import BeirDataset, is_beir_folder

__all__ = [
    "ENV_DATA_DIR",
    "ENV_HOME",
    "available_datasets",
    "load_dataset",
    "register_local",
    "registered_datasets",
    "registry_path",
    "resolve_data_dir",
    "unregister_local",
]

ENV_DATA_DIR = "DISTILIR_DATA_DIR"
ENV_HOME = "DISTILIR_HOME"
REGISTRY_FILE = "distilir_datasets.json"
REGISTRY_FORMAT = "distilir-datasets/1"

_IN_PROCESS: dict[str, Path] = {}

PathLike = str | os.PathLike[str]


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The folder of named datasets: ``data_dir`` if given, else ``$DISTILIR_DATA_DIR``, else ``./data``.

    The folder is not required to exist here; :func:`load_dataset` says so when a name is missing.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser().absolute()
    return Path("data").absolute()


def _data_dir_origin(data_dir: PathLike | None) -> str:
    if data_dir is not None:
        return "the data_dir argument"
    if os.environ.get(ENV_DATA_DIR):
        return f"${ENV_DATA_DIR}"
    return f"the default ./data (set ${ENV_DATA_DIR} or pass data_dir=)"


def available_datasets(data_dir: PathLike | None = None) -> list[str]:
    """Names of the BEIR folders in the data folder, sorted."""
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_beir_folder(p))


def registry_path(data_dir: PathLike | None = None) -> Path:
    """Where :func:`register_local` persists registrations (see the module docstring)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser().absolute() / REGISTRY_FILE
    return resolve_data_dir(data_dir) / REGISTRY_FILE


def _read_registry(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"dataset registry {path} is not valid JSON ({exc}); fix it or delete it and register again."
        ) from None
    if not isinstance(content, dict) or content.get("format") != REGISTRY_FORMAT:
        raise DatasetError(
            f'{path} is not a distilir dataset registry (expected "format": {REGISTRY_FORMAT!r}); '
            "move it away or set $DISTILIR_HOME to another folder."
        )
    datasets = content.get("datasets", {})
    if not isinstance(datasets, dict):
        raise DatasetError(f"{path}: 'datasets' must be an object of {{id: {{path: ...}}}}.")
    return datasets


def registered_datasets(data_dir: PathLike | None = None) -> dict[str, Path]:
    """Registered ids and their folders: the registry file's, overridden by this process's."""
    entries = {k: Path(v["path"]) for k, v in _read_registry(registry_path(data_dir)).items() if "path" in v}
    entries.update(_IN_PROCESS)
    return dict(sorted(entries.items()))


def _check_id(dataset_id: str) -> None:
    if not isinstance(dataset_id, str) or not dataset_id.strip() or any(c.isspace() for c in dataset_id):
        raise DatasetError(f"dataset id must be a non-empty string without spaces, got {dataset_id!r}.")


def register_local(
    dataset_id: str, path: PathLike, *, data_dir: PathLike | None = None, persist: bool = True
) -> Path:
    """Make ``load_dataset(dataset_id)`` read the BEIR folder ``path``; return the folder's absolute path.

    The registration holds in this process at once and, with ``persist=True``, is written to the
    registry file (:func:`registry_path`) so that later processes see it too. If that file cannot
    be written (a read-only data folder), a :class:`DatasetWarning` says so and suggests
    ``$DISTILIR_HOME``; the in-process registration still holds.
    """
    _check_id(dataset_id)
    folder = Path(path).expanduser().resolve()
    BeirDataset(folder)  # raises a DatasetError naming the missing files if it is not a BEIR folder
    _IN_PROCESS[dataset_id] = folder
    if persist:
        file = registry_path(data_dir)
        try:
            entries = _read_registry(file)
            entries[dataset_id] = {
                "path": str(folder),
                "registered": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            with atomic_write(file) as f:
                json.dump({"format": REGISTRY_FORMAT, "datasets": entries}, f, indent=2, sort_keys=True)
                f.write("\n")
        except OSError as exc:
            warnings.warn(
                f"registered {dataset_id!r} for this process only: cannot write {file} ({exc}). "
                f"Set ${ENV_HOME} to a writable folder to keep registrations across processes.",
                DatasetWarning,
                stacklevel=2,
            )
    return folder


def unregister_local(dataset_id: str, *, data_dir: PathLike | None = None) -> bool:
    """Remove a registration (in-process and in the registry file); True if there was one."""
    found = _IN_PROCESS.pop(dataset_id, None) is not None
    file = registry_path(data_dir)
    entries = _read_registry(file)
    if dataset_id in entries:
        del entries[dataset_id]
        with atomic_write(file) as f:
            json.dump({"format": REGISTRY_FORMAT, "datasets": entries}, f, indent=2, sort_keys=True)
            f.write("\n")
        found = True
    return found


def load_dataset(name: str | os.PathLike[str], data_dir: PathLike | None = None) -> BaseDataset:
    """Load a dataset by registered id, folder path, name in the data folder, or ir_datasets id.

    See the module docstring for the order. Raises :class:`DatasetError` listing what was tried.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"dataset name must be a non-empty string or path, got {name!r}.")
    tried: list[str] = []

    registered = registered_datasets(data_dir)
    if name in registered:
        folder = registered[name]
        if not folder.is_dir():
            raise DatasetError(
                f"dataset id {name!r} is registered to {folder}, which no longer exists; register it "
                f"again with register_local({name!r}, new_path) or unregister_local({name!r})."
            )
        return BeirDataset(folder, name=name)
    tried.append(f"registered ids ({registry_path(data_dir)} and this process): {list(registered) or 'none'}")

    as_path = Path(name).expanduser()
    if as_path.is_dir():
        return BeirDataset(as_path)
    tried.append(f"a folder at {as_path.absolute()}: does not exist")

    root = resolve_data_dir(data_dir)
    if "/" not in name and os.sep not in name and (root / name).is_dir():
        return BeirDataset(root / name, name=name)
    root_state = "" if root.is_dir() else " (that folder does not exist)"
    tried.append(f"{root / name} in the data folder {root}, from {_data_dir_origin(data_dir)}{root_state}")

    if not name.startswith((".", "/", "~")):  # ir_datasets ids never start like a path
        from distilir.data.irds import IrDatasetsDataset, is_ir_datasets_id

        if is_ir_datasets_id(name):
            return IrDatasetsDataset(name)
        tried.append("ir_datasets ids: not one (see https://ir-datasets.com)")

    available = available_datasets(data_dir)
    lines = "\n".join(f"  - {t}" for t in tried)
    raise DatasetError(
        f"dataset {name!r} not found. Tried:\n{lines}\n"
        f"Available in the data folder: {available or 'none'}. "
        "Give one of those names, a path to a BEIR folder, an ir_datasets id, or register a folder with "
        "distilir.data.register_local(id, path)."
    )
