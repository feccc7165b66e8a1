"""Manifests as contracts: a stage that reads an artifact checks that the artifact was made from the
dataset it is about to use, and refuses a mismatch naming both sides and what to do.

An artifact's manifest records its dataset as :meth:`Dataset.describe` gives it (name, kind, source,
``files``: sha256 per source file). Two descriptions are the same dataset when their file hashes
agree; without hashes on either side (an ir_datasets id, an old manifest), when their names agree.

    from distilir.data.contracts import check_same_dataset
    check_same_dataset(candidates_manifest["dataset"], ds, artifact="candidates file c.jsonl")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distilir.data.base import DatasetError

__all__ = ["DatasetMismatch", "check_same_dataset", "recorded_name"]


class DatasetMismatch(DatasetError):
    """An artifact made from one dataset was given with another."""


def recorded_name(recorded: Any) -> str | None:
    """The dataset name a manifest records (a ``describe()`` dict or a bare name)."""
    if isinstance(recorded, Mapping):
        name = recorded.get("name")
        return str(name) if name is not None else None
    return str(recorded) if recorded is not None else None


def check_same_dataset(recorded: Any, dataset: Any, *, artifact: str, fix: str | None = None) -> None:
    """Raise :class:`DatasetMismatch` when ``recorded`` (the dataset an artifact's manifest names: a
    ``describe()`` dict or a name) is not ``dataset``; a manifest that records nothing passes.

    Files are compared when both sides have hashes: a collection whose files changed since the
    artifact was made is refused too (its ids may now mean other texts).
    """
    if recorded is None:
        return
    theirs = recorded_name(recorded)
    ours = dataset.name
    files_theirs = recorded.get("files") if isinstance(recorded, Mapping) else None
    files_ours = dataset.describe().get("files") if files_theirs else None
    todo = fix or f"use the dataset it was made from (--dataset {theirs}), or make it again for {ours}"
    if files_theirs and files_ours:
        keys = set(files_theirs) | set(files_ours)
        changed = sorted(k for k in keys if files_theirs.get(k) != files_ours.get(k))
        if not changed:
            return
        if theirs == ours:
            raise DatasetMismatch(
                f"{artifact} was made from {theirs!r} when its files were different: {', '.join(changed)} "
                f"changed since (sha256 in its manifest vs on disk now, {dataset.describe().get('source')}). "
                f"Its ids may now name other texts; make it again from the current files."
            )
        raise DatasetMismatch(
            f"{artifact} was made from dataset {theirs!r} ({recorded.get('source')}), but the dataset given "
            f"is {ours!r} ({dataset.describe().get('source')}); their files differ. To fix: {todo}."
        )
    if theirs is not None and theirs != ours:
        raise DatasetMismatch(
            f"{artifact} was made from dataset {theirs!r}, but the dataset given is {ours!r}. To fix: {todo}."
        )
