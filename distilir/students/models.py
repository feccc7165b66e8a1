"""Names for loaded student models (model names resolve with ``distilir_index.models.resolve_model``,
the one resolver of every command)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_student_model", "model_label"]


def load_student_model(model: Any, cls: type, *, device: str | None = None, **kwargs: Any) -> tuple[Any, str]:
    """``distilir_index.models.load_model`` (the one loader) for a student: ``(model, its name)``; the
    name is what was asked for, or for an object its folder (``model_label``)."""
    from distilir_index.models import load_model

    from distilir.students.base import StudentError

    loaded, _ = load_model(model, cls, device=device, error=StudentError, **kwargs)
    return loaded, (str(model) if isinstance(model, (str, os.PathLike)) else model_label(loaded))


def model_label(model: Any) -> str:
    """A name for an already loaded sentence-transformers model: its local folder, else ``in-memory``."""
    try:
        first = model[0]
        config = first.auto_model.config
        path = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    except Exception:  # noqa: BLE001 - a custom first module has no folder to report
        path = None
    return path if path and os.path.isdir(path) else "in-memory"
