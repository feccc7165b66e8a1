"""Training lists from a teacher score store (``distilir.teachers.store.TeacherStore``).

The store holds teacher scores keyed by (teacher fingerprint, query, document); it yields, per query,
the documents it scored with their texts (``iter_lists``). We add the dataset's qrels when the
positives come from them, and summarise the store's manifest (teacher fingerprint and description)
for the student's manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distilir.teachers.store import TeacherStore
from distilir.training.config import ConfigError, DataConfig
from distilir.training.data import TrainingList

__all__ = ["load_training_lists", "store_summary"]

#: Store manifest keys copied into the student's manifest (the rest can be large).
_SUMMARY_KEYS = (
    "format",
    "teacher",
    "model",
    "score_type",
    "normalization",
    "prompt_template",
    "max_length",
    "dtype",
    "candidates",
    "counts",
    "created",
    "updated",
    "producer",
)


def store_summary(store: TeacherStore, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The teacher part of the student's manifest: the store's fingerprint and a manifest summary."""
    manifest = store.manifest
    return {
        "store": str(Path(path).resolve()),
        "fingerprint": store.fingerprint,
        "manifest": {k: manifest[k] for k in _SUMMARY_KEYS if k in manifest},
    }


def load_training_lists(
    data: DataConfig, data_dir: str | os.PathLike[str] | None = None
) -> tuple[list[TrainingList], dict[str, Any], dict[str, Any]]:
    """Read the lists of ``data.split``'s queries from ``data.teacher_store``.

    Returns ``(lists, teacher_summary, data_info)``.
    """
    if data.lists_file:
        return _from_lists_file(data, data_dir)
    if not data.teacher_store:
        raise ConfigError(
            "data.teacher_store: expected the folder of a teacher score store, got None. Build one with "
            "`distilir teach ...`, or pass the lists in code: "
            "Trainer(config, lists=[TrainingList(...), ...])."
        )
    if not data.dataset:
        raise ConfigError(
            "data.dataset: expected the collection the store's ids refer to (e.g. scifact), got None."
        )
    if not Path(data.teacher_store).exists():
        raise ConfigError(f"data.teacher_store: {data.teacher_store} does not exist.")
    from distilir.data import load_dataset

    store = TeacherStore.open(data.teacher_store)
    ds = load_dataset(data.dataset, data_dir=data_dir)
    scored_on = store.datasets()
    if scored_on and ds.name not in scored_on:
        raise ConfigError(
            f"data.dataset: {data.dataset!r} ({ds.name}), but the store {data.teacher_store} was scored on "
            f"{', '.join(scored_on)} (its manifest). Set data.dataset: {scored_on[0]}, or score candidates "
            f"of {ds.name} into a new store with `distilir teach --dataset {ds.name} ...`."
        )
    queries = ds.queries(data.split)
    if not queries:
        raise ConfigError(f"data.split: {data.dataset} has no queries judged in split {data.split!r}.")
    corpus = ds.corpus()
    candidates = None
    if data.candidates:
        from distilir.candidates import read_candidates
        from distilir.data.contracts import check_same_dataset

        run, made = read_candidates(data.candidates)
        check_same_dataset(
            made.get("dataset"),
            ds,
            artifact=f"data.candidates {data.candidates}",
            fix=f"give data.candidates made for {ds.name} (`distilir candidates --dataset {ds.name}`)",
        )
        candidates = {q: list(docs) for q, docs in run.items() if q in queries}
    qrels = ds.qrels(data.split) if data.positives == "qrels" else {}
    lists = []
    # missing="skip": a candidates file may list more documents than were scored; only scored ones are used
    for item in store.iter_lists(queries, corpus, candidates, missing="skip"):
        qid = str(item["qid"])
        rel = [d for d, g in qrels.get(qid, {}).items() if g >= data.min_relevance]
        lists.append(TrainingList.from_mapping(item, positives=rel))
    if 0 < len(lists) < len(queries):
        import warnings

        warnings.warn(
            f"the store {data.teacher_store} holds lists for {len(lists)} of the {len(queries)} queries of "
            f"{ds.name}/{data.split}: training on those only. If its scoring was interrupted, run the same "
            "`distilir teach` command again to finish it first.",
            stacklevel=2,
        )
    info = {
        "dataset_description": _describe(ds),
        "candidates_file": data.candidates,
        "queries_in_split": len(queries),
        "queries_with_lists": len(lists),
    }
    return lists, store_summary(store, data.teacher_store), info


def _from_lists_file(
    data: DataConfig, data_dir: str | os.PathLike[str] | None
) -> tuple[list[TrainingList], dict[str, Any], dict[str, Any]]:
    from distilir.training.data import attach_positives, read_lists_jsonl

    path = Path(data.lists_file)  # type: ignore[arg-type]
    if not path.is_file():
        raise ConfigError(
            f"data.lists_file: {path} does not exist; write one with distilir.training.write_lists_jsonl."
        )
    lists = read_lists_jsonl(path)
    info: dict[str, Any] = {"lists_file": str(path.resolve())}
    if data.positives == "qrels":
        if not data.dataset:
            raise ConfigError(
                "data.dataset: positives: qrels needs the dataset whose qrels name the positives."
            )
        from distilir.data import load_dataset

        ds = load_dataset(data.dataset, data_dir=data_dir)
        lists = attach_positives(lists, ds.qrels(data.split), data.min_relevance)
        info["dataset_description"] = _describe(ds)
    sidecar = path.with_name(path.name + ".manifest.json")
    teacher = json.loads(sidecar.read_text(encoding="utf-8")).get("teacher") if sidecar.is_file() else None
    return (
        lists,
        {
            "lists_file": str(path.resolve()),
            "fingerprint": (teacher or {}).get("fingerprint"),
            "manifest": teacher or {},
        },
        info,
    )


def _describe(ds: Any) -> dict[str, Any]:
    try:
        d = ds.describe()
    except Exception:  # noqa: BLE001 - a description is informative only
        return {"name": ds.name}
    return {k: d[k] for k in ("name", "kind", "source", "counts") if k in d}
