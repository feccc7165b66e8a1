"""Names for loaded student models (model names resolve with ``distilir_index.models.resolve_model``,
the one resolver of every command)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["model_label"]


def model_label(model: Any) -> str:
    """A name for an already loaded sentence-transformers model: its local folder, else ``in-memory``."""
    try:
        first = model[0]
        config = first.auto_model.config
        path = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    except Exception:  # noqa: BLE001 - a custom first module has no folder to report
        path = None
    return path if path and os.path.isdir(path) else "in-memory"
