"""`distilir teach --ray`: score candidate lists with a pool of teacher replicas on a Ray cluster.

The same run as :meth:`TeacherStore.score`, spread over ``workers`` Ray actors (one per GPU, or one
per CPU slot), with the same store, the same shards and the same resume guarantees::

    driver                                   actors (teacher replicas)
    ------                                   -------------------------
    store = TeacherStore.open(path, descr)   build_teacher(spec, corpus=...)   <- built in the actor
    todo  = pairs not in the store yet       (the spec travels, never a model)
    batches of whole queries  ─────────────> score_many(queries, docs)
    commit each returned batch as one shard <─────────────
    (the driver alone writes: flock, fsync, rename, manifest)

Why Ray actors and not Ray Data: the store's commit point is one Parquet shard per batch of whole
queries, written and listed in the manifest by the one process that holds the store's lock. A Ray
Data pipeline re-blocks rows between stages and hands results back in blocks that do not map to
query batches, and its retries re-execute work the store would have to deduplicate; an actor pool
fed one query batch per call keeps "one result = one shard" and bounds the work in flight (and hence
lost by a kill) to one batch per actor. Teachers are stateful (a loaded model, an embedding cache),
which is what actors are for.

Guarantees (tested in ``tests/distilir/teachers/test_ray_scoring.py``): only pairs missing from the
store are sent; each returned batch is committed with the store's own atomic shard commit; a run
killed at any point and started again scores no committed pair twice; the final store holds the same
(query, document, score, rank) rows as a single-process run (shards may come in another order).

The driver never loads the model: the first actor reports the teacher's name, score type and
``get_config_dict()``, from which the fingerprint is computed exactly as for a local teacher; every
replica must report the same fingerprint (else the replicas do not hold the same weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir.teachers.base import TeacherError, teacher_fingerprint
from distilir.teachers.store import StoreError, TeacherStore

__all__ = ["RayScoringError", "score_with_ray"]

INSTALL_HINT = "pip install 'distilir[ray]'"


class RayScoringError(TeacherError):
    """Ray scoring cannot run as asked; the message says what to change."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"teacher scoring on Ray needs the 'ray' package, which is not installed ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
    return ray


class _TeacherDescription:
    """A Teacher-protocol stand-in on the driver built from what a replica reports: enough to open
    the store (name, score type, config -> fingerprint); it cannot score."""

    def __init__(self, name: str, score_type: str, config: dict[str, Any]) -> None:
        self.name = name
        self.score_type = score_type
        self._config = config

    def get_config_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._config))

    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        raise RayScoringError("the driver holds no model; scores come from the Ray actors")

    def score(self, query: str, docs: Sequence[str]) -> list[float]:
        return self.score_many([query], [docs])[0]


class _TeacherReplica:
    """One teacher replica (the body of a Ray actor): builds the teacher from its spec on start."""

    def __init__(self, spec: Any, corpus: Any, threads: int | None, env: Mapping[str, str]) -> None:
        os.environ.update(env)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        from distilir.teachers.factory import build_teacher

        self.teacher = build_teacher(spec, corpus=corpus)

    def describe(self) -> dict[str, Any]:
        config = json.loads(json.dumps(self.teacher.get_config_dict(), default=str))
        return {
            "name": self.teacher.name,
            "score_type": self.teacher.score_type,
            "config": config,
            "fingerprint": teacher_fingerprint(self.teacher),
        }

    def score(
        self, batch_id: int, queries: list[str], docs: list[list[str]]
    ) -> tuple[int, list[list[float]]]:
        results = self.teacher.score_many(queries, docs)
        return batch_id, [[float(s) for s in r] for r in results]


def _default_workers(ray: Any, threads: int) -> tuple[int, dict[str, float]]:
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(1, int(resources.get("CPU", 1)) // threads), {"num_cpus": threads}


def score_with_ray(
    store_path: str | os.PathLike[str],
    spec: str | Mapping[str, Any],
    queries: Mapping[str, Any],
    docs: Mapping[str, Any],
    candidates: Mapping[str, Sequence[str]],
    *,
    corpus: Any = None,
    candidate_source: Mapping[str, Any] | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    batch_queries: int = 16,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every candidate pair missing from the store at ``store_path`` on Ray; commit as shards.

    Args:
        store_path: the teacher score store (created or resumed, as ``TeacherStore.open``).
        spec: teacher spec (string, dict or YAML/JSON file; see :func:`build_teacher`); each actor
            builds its own teacher from it.
        queries / docs / candidates: as :meth:`TeacherStore.score`.
        corpus: ``{docid: text}`` for teachers that need collection statistics (``bm25``); put in
            Ray's object store once and shared by the actors.
        candidate_source: recorded in the manifest (as ``TeacherStore.open``).
        workers: number of teacher replicas (default: one per GPU of the cluster, else one per
            ``threads_per_worker`` CPUs).
        threads_per_worker: torch threads (and CPUs reserved) per CPU replica.
        batch_queries: queries per actor call and per shard (a kill loses at most one batch per actor).
        address: a running cluster (``ray://host:10001`` or ``auto``); default: the cluster this
            process is already connected to, else a local one started (and stopped) here.
        progress: tqdm bar over pairs.

    Returns ``{"scored", "skipped", "shards", "workers", "fingerprint"}``.
    """
    ray = _import_ray()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise RayScoringError(f"workers must be a positive number of teacher replicas, got {workers!r}")
    if (
        isinstance(threads_per_worker, bool)
        or not isinstance(threads_per_worker, int)
        or threads_per_worker < 1
    ):
        raise RayScoringError(f"threads_per_worker must be a positive int, got {threads_per_worker!r}")
    if isinstance(batch_queries, bool) or not isinstance(batch_queries, int) or batch_queries < 1:
        raise StoreError(f"batch_queries must be a positive int, got {batch_queries!r}")
    if isinstance(spec, os.PathLike):
        spec = str(spec)
    if isinstance(spec, str) and spec.endswith((".yaml", ".yml", ".json")) and Path(spec).is_file():
        from distilir.teachers.factory import _load_file

        spec = _load_file(Path(spec))  # the actors may run on machines without this file
    from distilir.teachers.factory import parse_teacher_spec

    parse_teacher_spec(spec)  # a bad spec fails here, before any actor starts

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=progress)
    try:
        return _run(
            ray, Path(store_path), spec, queries, docs, candidates, corpus, candidate_source,
            workers, threads_per_worker, batch_queries, progress,
        )  # fmt: skip
    finally:
        if started_here:
            ray.shutdown()


def _run(
    ray: Any,
    store_path: Path,
    spec: Any,
    queries: Mapping[str, Any],
    docs: Mapping[str, Any],
    candidates: Mapping[str, Sequence[str]],
    corpus: Any,
    candidate_source: Mapping[str, Any] | None,
    workers: int | None,
    threads: int,
    batch_queries: int,
    progress: bool,
) -> dict[str, Any]:
    from ray.util import ActorPool

    default_n, options = _default_workers(ray, threads)
    n = workers or default_n
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DISTILIR_CACHE", "DISTILIR_EMBEDDING_CACHE"):
        if key in os.environ:
            env[key] = os.environ[key]
    corpus_ref = ray.put(corpus) if corpus is not None else None
    actor_cls = ray.remote(**options)(_TeacherReplica)
    actors = [
        actor_cls.remote(spec, corpus_ref, threads if "num_gpus" not in options else None, env)
        for _ in range(n)
    ]
    try:
        described = ray.get([a.describe.remote() for a in actors])
        fingerprints = sorted({d["fingerprint"] for d in described})
        if len(fingerprints) != 1:
            raise RayScoringError(
                f"the {n} teacher replicas report different fingerprints {fingerprints}: they do not load "
                "the same weights/settings (a model file differing between nodes?). Give every node the "
                "same model files."
            )
        first = described[0]
        description = _TeacherDescription(first["name"], first["score_type"], first["config"])
        if teacher_fingerprint(description) != first["fingerprint"]:  # pragma: no cover - defensive
            raise RayScoringError("the teacher config did not survive serialisation unchanged; report this")
        with TeacherStore.open(store_path, description, candidate_source=candidate_source) as store:
            pool = ActorPool(actors)
            counts = store.score(
                description,
                queries,
                docs,
                candidates,
                batch_queries=batch_queries,
                progress=progress,
                scorer=lambda items: pool.map_unordered(lambda a, item: a.score.remote(*item), items),
                label=f"{first['name']} on {n} Ray actors",
            )
            fingerprint = store.fingerprint
    finally:
        for a in actors:
            ray.kill(a)
    return {**counts, "workers": n, "fingerprint": fingerprint}
