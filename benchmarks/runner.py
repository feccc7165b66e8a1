"""One in-process runner for the benchmark conditions in ``benchmarks/conditions/*.yaml``.

A conditions file names a dataset and split and a list of conditions; each condition is a pipeline
(data, not shell strings) with expected metrics and tolerances, and optionally published anchors::

    dataset: scifact
    split: test
    conditions:
      - name: bm25
        pipeline: {type: first_stage, retriever: bm25, k1: 0.9, b: 0.4}
        expected: {nDCG@10: [0.6790, 0.005]}       # our own figure, guarded with a tolerance
        published: {nDCG@10: [0.679, "pyserini 2CR BEIR, BM25 flat"]}
        ci: true                                  # part of the fast subset run by `make test`

Pipelines:
  first_stage  retriever bm25 | dense | sparse | hybrid (model, k1, b, factory, rrf_k)
  run_file     evaluate a TREC run shipped with the dataset (``run: bm25.top100``) or a path
  rerank       a teacher (spec as in distilir.teachers.factory) re-ranks a first stage's top ``depth``
  student      first-stage retrieval with a trained student folder (``model: PATH``, ``kind: dense|sparse``;
               ``{cache}`` in PATH is $DISTILIR_CACHE or ~/.cache/distilir; ``trained_by`` says how)
               or re-ranking with a cross-encoder student (``kind: cross-encoder``)

Any condition may name another of its dataset with ``compare_to: NAME`` (a student against the model
it started from): the report adds a paired t-test against it, beside the one against BM25.

For every condition the runner prints OK / FAIL per expected metric (FAIL exits non-zero), and
records efficiency beside effectiveness: index build time and size, search latency p50/p99 over
single queries, batched queries/s, and (for rerank) pairs/s.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Condition", "ConditionResult", "load_conditions", "run_condition", "main"]

HERE = Path(__file__).resolve().parent
CONDITIONS_DIR = HERE / "conditions"
REPORTS_DIR = HERE / "reports"
PIPELINES = ("first_stage", "run_file", "rerank", "student")


class ConditionError(ValueError):
    pass


class ConditionUnavailable(ConditionError):
    """What a condition needs is not here (e.g. a student folder that has not been trained yet); the
    full run reports it, naming the condition explicitly fails."""


@dataclass
class Condition:
    name: str
    dataset: str
    split: str
    pipeline: dict[str, Any]
    expected: dict[str, tuple[float, float]] = field(default_factory=dict)
    published: dict[str, tuple[float, str]] = field(default_factory=dict)
    ci: bool = False
    source: str = ""
    compare_to: str | None = None  # id of the condition this one is tested against (e.g. its base model)

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.name}"


@dataclass
class ConditionResult:
    condition: Condition
    metrics: dict[str, float]
    efficiency: dict[str, float]
    checks: list[tuple[str, float, float, float, bool]]  # measure, ours, expected, tolerance, ok
    per_query: dict[str, dict[str, float]]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c[-1] for c in self.checks)


def load_conditions(paths: Iterable[Path] | None = None) -> list[Condition]:
    """Read every conditions file; each condition is validated so a typo fails before any work."""
    out: list[Condition] = []
    for path in sorted(paths or CONDITIONS_DIR.glob("*.yaml")):
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "dataset" not in doc or "conditions" not in doc:
            raise ConditionError(f"{path}: expected a mapping with 'dataset', 'split' and 'conditions'")
        for i, raw in enumerate(doc["conditions"]):
            where = f"{path}: condition #{i + 1}"
            known = {"name", "pipeline", "expected", "published", "ci", "split", "dataset", "compare_to"}
            unknown = set(raw) - known
            if unknown:
                raise ConditionError(f"{where}: unknown keys {sorted(unknown)}")
            pipeline = dict(raw.get("pipeline") or {})
            if pipeline.get("type") not in PIPELINES:
                raise ConditionError(
                    f"{where}: pipeline.type must be one of {PIPELINES}, got {pipeline.get('type')!r}"
                )
            expected = {m: (float(v[0]), float(v[1])) for m, v in (raw.get("expected") or {}).items()}
            published = {m: (float(v[0]), str(v[1])) for m, v in (raw.get("published") or {}).items()}
            out.append(
                Condition(
                    name=raw["name"],
                    dataset=raw.get("dataset", doc["dataset"]),
                    split=raw.get("split", doc.get("split", "test")),
                    pipeline=pipeline,
                    expected=expected,
                    published=published,
                    ci=bool(raw.get("ci", False)),
                    source=str(path.name),
                    compare_to=(
                        f"{raw.get('dataset', doc['dataset'])}/{raw['compare_to']}"
                        if raw.get("compare_to")
                        else None
                    ),
                )
            )
    ids = [c.id for c in out]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConditionError(f"duplicate condition ids: {sorted(dupes)}")
    for c in out:
        if c.compare_to is not None and c.compare_to not in ids:
            target = c.compare_to[len(c.dataset) + 1 :]
            raise ConditionError(
                f"{c.source}: condition {c.name!r} has compare_to {target!r}, which "
                f"is not a condition of dataset {c.dataset}; name one of its conditions (e.g. its base model)"
            )
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _latency(index, texts: list[str], k: int, n: int) -> dict[str, float]:
    """p50/p99 of single-query latency over the first ``n`` queries, and batched queries/s."""
    sample = texts[:n]
    index.search(sample[:1], k=k)  # warm-up
    lat = []
    for t in sample:
        t0 = time.perf_counter()
        index.search([t], k=k)
        lat.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    index.search(texts, k=k)
    batched = time.perf_counter() - t0
    return {
        "latency_p50_ms": _percentile(lat, 0.5),
        "latency_p99_ms": _percentile(lat, 0.99),
        "qps_batched": len(texts) / batched if batched > 0 else float("inf"),
    }


def _first_stage(ds, cond: Condition, conv, k: int, cache_dir: Path | None, measure_latency: int):
    from distilir.candidates import FirstStageConfig, build_index, iter_search

    p = cond.pipeline
    config = FirstStageConfig(
        retriever=p.get("retriever", "bm25"),
        model=p.get("model"),
        k1=p.get("k1", 0.9),
        b=p.get("b", 0.4),
        factory=p.get("factory", "flat"),
        rrf_k=p.get("rrf_k", 60),
    )
    t0 = time.perf_counter()
    index = build_index(ds, config, cache_dir=cache_dir)
    eff = {"index_load_or_build_s": time.perf_counter() - t0}
    path = getattr(index, "path", None)
    if path and Path(path).is_dir():
        eff["index_bytes"] = float(_dir_size(Path(path)))
    queries = {q: v.text for q, v in ds.queries(cond.split).items()}
    t0 = time.perf_counter()
    run = dict(iter_search(index, queries, k=k, drop_self=conv.ignore_identical_ids, desc=cond.id))
    eff["search_s"] = time.perf_counter() - t0
    if measure_latency:
        eff.update(_latency(index, list(queries.values()), k=min(k, 100), n=measure_latency))
    return run, eff


def run_condition(
    cond: Condition, data_dir: str | None = None, cache_dir: Path | None = None, measure_latency: int = 50
) -> ConditionResult:
    from distilir.conventions import conventions_for
    from distilir.data import load_dataset
    from distilir.data.trec import read_run
    from distilir.evaluation import evaluate

    t_start = time.perf_counter()
    ds = load_dataset(cond.dataset, data_dir=data_dir)
    conv = conventions_for(ds.name)
    qrels = ds.qrels(cond.split)
    p = cond.pipeline
    k = int(p.get("k", 1000))
    efficiency: dict[str, float] = {}
    kind = p["type"]
    if kind == "run_file":
        runs = ds.runs()
        path = runs.get(p["run"]) if p["run"] in runs else Path(p["run"])
        if path is None or not Path(path).is_file():
            raise ConditionError(f"{cond.id}: run {p['run']!r} not found; the dataset ships {sorted(runs)}")
        run = read_run(path)
    elif kind == "first_stage":
        run, efficiency = _first_stage(ds, cond, conv, k, cache_dir, measure_latency)
    elif kind == "student":
        from distilir_index.models import cache_dir as distilir_cache

        student = dict(p)
        model = os.path.expanduser(
            os.path.expandvars(str(student["model"]).replace("{cache}", str(distilir_cache())))
        )
        if not Path(model).exists():
            raise ConditionUnavailable(
                f"{cond.id}: student folder {model} does not exist; train it first "
                f"({student.get('trained_by', 'see benchmarks/README.md')})"
            )
        student.pop("trained_by", None)
        if student.get("kind", "dense") == "cross-encoder":
            run, efficiency = _rerank(
                ds, cond, conv, {"teacher": f"cross-encoder:{model}?backend=onnx", **student}, cache_dir
            )
        else:
            retriever = "sparse" if student.get("kind") == "sparse" else "dense"
            sub = Condition(cond.name, cond.dataset, cond.split, {"retriever": retriever, "model": model})
            run, efficiency = _first_stage(ds, sub, conv, k, cache_dir, measure_latency)
    elif kind == "rerank":
        run, efficiency = _rerank(ds, cond, conv, p, cache_dir)
    else:  # pragma: no cover - validated in load_conditions
        raise ConditionError(kind)
    measures = tuple(dict.fromkeys([*cond.expected, *cond.published, *conv.measures]))
    res = evaluate(run, qrels, measures=measures, conventions=conv)
    checks = []
    for m, (value, tol) in cond.expected.items():
        ours = res.aggregate[m]
        checks.append((m, ours, value, tol, abs(ours - value) <= tol + 1e-12))
    return ConditionResult(
        cond, dict(res.aggregate), efficiency, checks, res.per_query, time.perf_counter() - t_start
    )


def _rerank(ds, cond: Condition, conv, p: dict, cache_dir: Path | None):
    """Re-rank the top ``depth`` of a first stage with a teacher; scores stored in a teacher store
    under the cache dir so a second run re-scores nothing."""
    from distilir.candidates import FirstStageConfig, build_index, iter_search
    from distilir.teachers.factory import build_teacher
    from distilir.teachers.store import TeacherStore

    depth = int(p.get("depth", 100))
    first = FirstStageConfig(retriever=p.get("first_stage", "bm25"))
    index = build_index(ds, first, cache_dir=cache_dir)
    queries = {q: v.text for q, v in ds.queries(cond.split).items()}
    candidates_run = dict(iter_search(index, queries, k=depth, drop_self=conv.ignore_identical_ids))
    candidates = {q: list(d) for q, d in candidates_run.items()}
    corpus = ds.corpus()
    docs = {d: corpus[d].full_text for ds_ in candidates.values() for d in ds_}
    teacher = build_teacher(p["teacher"], corpus={d.id: d.full_text for d in corpus.values()})
    root = (
        cache_dir or Path(os.environ.get("DISTILIR_CACHE", Path.home() / ".cache" / "distilir"))
    ) / "teacher-stores"
    store_dir = root / f"{ds.name.replace('/', '_')}-{cond.split}-{teacher.fingerprint}"
    store = TeacherStore.open(store_dir, teacher)
    before = len(store)
    t0 = time.perf_counter()
    store.score(teacher, queries, docs, candidates, progress=True)
    seconds = time.perf_counter() - t0
    scored = len(store) - before
    run = {q: dict(store.get(q)) for q in candidates}
    eff = {"rerank_depth": float(depth), "teacher_scoring_s": seconds}
    if scored:
        eff["teacher_pairs_per_s"] = scored / seconds
    return run, eff


# ----------------------------------------------------------------------------------------- report


def _fmt(v: float) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def print_result(r: ConditionResult) -> None:
    head = f"[{'OK' if r.ok else 'FAIL'}] {r.condition.id} ({r.seconds:.1f}s)"
    print(head)
    print("    " + "  ".join(f"{m}={v:.4f}" for m, v in r.metrics.items()))
    for m, ours, value, tol, ok in r.checks:
        print(f"    {'OK  ' if ok else 'FAIL'} {m}: {ours:.4f} (expected {value:.4f} ± {tol})")
    for m, (value, source) in r.condition.published.items():
        print(f"    published {m}: {value} ({source}); ours {r.metrics.get(m, float('nan')):.4f}")
    if r.efficiency:
        print("    " + ", ".join(f"{k}={v:.2f}" for k, v in r.efficiency.items()))


def write_report(
    results: list[ConditionResult], out_dir: Path, wall_s: float, unavailable: dict[str, str] | None = None
) -> Path:
    """Markdown + JSON report, with plots (effectiveness vs latency; significance vs BM25)."""
    from benchmarks.report import write_markdown

    return write_markdown(results, out_dir, wall_s, unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="Run benchmark conditions.")
    ap.add_argument("--list", action="store_true", help="list the conditions and exit")
    ap.add_argument(
        "--condition",
        action="append",
        default=None,
        help="run only these condition ids (dataset/name), repeatable; substring match",
    )
    ap.add_argument("--dataset", action="append", default=None, help="run only conditions on these datasets")
    ap.add_argument("--ci", action="store_true", help="only the fast CI subset")
    ap.add_argument("--dry-run", action="store_true", help="validate and print what would run")
    ap.add_argument(
        "--report",
        nargs="?",
        const=str(REPORTS_DIR),
        default=None,
        help=f"write a Markdown/JSON report with plots (default folder {REPORTS_DIR})",
    )
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache-dir", default=None, type=Path)
    ap.add_argument(
        "--latency-queries", type=int, default=50, help="single-query latency sample size (0: skip)"
    )
    args = ap.parse_args(argv)

    conditions = load_conditions()
    if args.ci:
        conditions = [c for c in conditions if c.ci]
    if args.dataset:
        conditions = [c for c in conditions if c.dataset in args.dataset]
    if args.condition:
        conditions = [c for c in conditions if any(s in c.id for s in args.condition)]
    if args.list or args.dry_run:
        for c in conditions:
            exp = ", ".join(f"{m}={v:.4f}±{t}" for m, (v, t) in c.expected.items())
            print(f"{c.id:45s} {c.pipeline['type']:12s} {'ci ' if c.ci else '   '}{exp}")
        if args.dry_run:
            print(f"{len(conditions)} conditions would run")
        return 0
    if not conditions:
        print("no condition matches")
        return 2
    from distilir.data import DatasetUnavailable

    t0 = time.perf_counter()
    results, unavailable = [], {}
    for c in conditions:
        try:
            r = run_condition(
                c, data_dir=args.data_dir, cache_dir=args.cache_dir, measure_latency=args.latency_queries
            )
        except (DatasetUnavailable, ConditionUnavailable) as exc:
            # A collection that is not on this machine (and cannot be downloaded), or a student not
            # trained yet, is not a regression: the full set skips it and says why; naming it
            # explicitly fails.
            unavailable[c.id] = str(exc)
            print(f"[UNAVAILABLE] {c.id}: {str(exc).splitlines()[0][:200]}")
            continue
        print_result(r)
        results.append(r)
    wall = time.perf_counter() - t0
    failed = [r.condition.id for r in results if not r.ok]
    print(
        f"\n{len(results) - len(failed)} OK, {len(failed)} FAIL, {len(unavailable)} unavailable "
        f"in {wall:.0f}s"
        f" ({platform.machine()}, {os.cpu_count()} cpus, {datetime.now(timezone.utc):%Y-%m-%d})"
    )
    if args.report and results:
        path = write_report(results, Path(args.report), wall, unavailable)
        print(f"report: {path}")
    if failed:
        print("FAILED: " + ", ".join(failed))
    if unavailable and (args.condition or args.dataset):
        first = next(iter(unavailable.values()))
        print(f"\nUNAVAILABLE (asked for by name): {', '.join(unavailable)}\n{first}")
        return 3
    return 1 if failed else 0


def results_to_json(results: list[ConditionResult]) -> list[dict]:
    return [
        {
            "id": r.condition.id,
            "pipeline": r.condition.pipeline,
            "metrics": r.metrics,
            "efficiency": r.efficiency,
            "ok": r.ok,
            "seconds": r.seconds,
            "checks": [
                dict(zip(("measure", "ours", "expected", "tolerance", "ok"), c, strict=True))
                for c in r.checks
            ],
            "published": {m: {"value": v, "source": s} for m, (v, s) in r.condition.published.items()},
            "compare_to": r.condition.compare_to,
        }
        for r in results
    ]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
