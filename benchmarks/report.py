"""The generated benchmark report: Markdown tables, a JSON dump, and matplotlib plots.

- effectiveness (nDCG@10) against single-query latency per system and dataset (a Pareto chart);
- a paired t-test per query of each system against BM25 on the same dataset and split, and of each
  condition against the one it names with ``compare_to`` (a student against its base model);
- training curves of distilled students (:func:`plot_training_curves`, from each run's
  ``metrics.jsonl``).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["plot_training_curves", "write_markdown"]


def _paired(r, b) -> tuple[float, float, tuple[int, int, int]] | None:
    """(mean nDCG@10 difference r - b, p-value of a paired t-test, wins/ties/losses) over the queries
    both evaluated; None when there is nothing to test."""
    from scipy.stats import ttest_rel

    qids = sorted(set(b.per_query) & set(r.per_query))
    xs = [r.per_query[q].get("nDCG@10", 0.0) for q in qids]
    ys = [b.per_query[q].get("nDCG@10", 0.0) for q in qids]
    if len(qids) < 2 or xs == ys:
        return None
    wtl = (
        sum(x > y for x, y in zip(xs, ys, strict=True)),
        sum(x == y for x, y in zip(xs, ys, strict=True)),
        sum(x < y for x, y in zip(xs, ys, strict=True)),
    )
    return sum(xs) / len(xs) - sum(ys) / len(ys), float(ttest_rel(xs, ys).pvalue), wtl


def _significance(results) -> dict[str, tuple[float, float]]:
    """condition id -> (mean nDCG@10 difference vs BM25, p-value of a paired t-test)."""
    out = {}
    base = {
        (r.condition.dataset, r.condition.split): r
        for r in results
        if r.condition.pipeline.get("type") == "first_stage"
        and r.condition.pipeline.get("retriever") == "bm25"
    }
    for r in results:
        b = base.get((r.condition.dataset, r.condition.split))
        if b is None or b is r:
            continue
        tested = _paired(r, b)
        if tested is not None:
            out[r.condition.id] = tested[:2]
    return out


def _comparisons(results) -> list[str]:
    """Markdown rows for the conditions that name another with ``compare_to`` (a student against its
    base model), when both ran."""
    by_id = {r.condition.id: r for r in results}
    rows = []
    for r in results:
        b = by_id.get(r.condition.compare_to or "")
        tested = _paired(r, b) if b is not None else None
        if tested is None:
            continue
        diff, p, (w, t, loss) = tested
        rows.append(
            f"| {r.condition.id} | {b.condition.id} | {r.metrics.get('nDCG@10', float('nan')):.4f} "
            f"| {b.metrics.get('nDCG@10', float('nan')):.4f} | {diff:+.4f} | {p:.3g} | {w}/{t}/{loss} |"
        )
    return rows


def train_curve(rows: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, losses) of the training lines of a metrics.jsonl, one value per step. A run resumed
    from an earlier checkpoint appends the steps it replays again; the later line wins."""
    by_step = {int(r["step"]): float(r["loss"]) for r in rows if r.get("type") == "train" and "loss" in r}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_training_curves(runs: dict[str, Path], path: Path, smooth: int = 5) -> Path | None:
    """One panel per run (four per row): each run's training loss per step (thin) and its moving average
    over ``smooth`` steps (thick), read from ``<run>/metrics.jsonl`` (train lines). Runs without a
    metrics file are left out; returns None when none has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    curves = {}
    for label, folder in runs.items():
        f = Path(folder) / "metrics.jsonl"
        if not f.is_file():
            continue
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        steps, losses = train_curve(rows)
        if steps:
            curves[label] = (np.array(steps), np.array(losses))
    if not curves:
        return None
    cols = min(4, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(curves) :]:
        ax.set_visible(False)
    for ax, (label, (steps, loss)) in zip(axes.flat, curves.items(), strict=False):
        line = ax.plot(steps, loss, lw=0.8, alpha=0.4)[0]
        if len(loss) >= smooth:
            avg = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
            ax.plot(steps[smooth - 1 :], avg, lw=2, color=line.get_color(), label=f"mean of {smooth}")
            ax.legend(fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_plot_from_json(results_json: Path, path: Path) -> Path | None:
    """Redraw the Pareto chart from a report's results.json (no condition is re-run)."""
    return _pareto_plot(json.loads(Path(results_json).read_text(encoding="utf-8")), path)


def _pareto_plot(rows: list[dict], path: Path) -> Path | None:
    """nDCG@10 against single-query p50 latency from the report's JSON rows (:func:`results_to_json`),
    one panel per dataset with at least two systems (a lone BM25 point says nothing about a
    trade-off), two panels per row, with the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        (*r["id"].rsplit("/", 1), r["efficiency"]["latency_p50_ms"], r["metrics"]["nDCG@10"])
        for r in rows
        if "latency_p50_ms" in r["efficiency"] and r["metrics"].get("nDCG@10") is not None
    ]
    datasets = sorted(d for d in {p[0] for p in points} if sum(p[0] == d for p in points) >= 2)
    if not datasets:
        return None
    cols = min(2, len(datasets))
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 5 * rows), squeeze=False)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for ax, d in zip(axes.flat, datasets, strict=False):
        pts = sorted((p for p in points if p[0] == d), key=lambda p: p[2])
        best = -1.0
        frontier = []
        for p in pts:
            if p[3] > best:
                frontier.append(p)
                best = p[3]
        ax.plot(
            [p[2] for p in frontier], [p[3] for p in frontier], "--", color="grey", lw=1, label="Pareto front"
        )
        for _, name, lat, ndcg in pts:
            ax.scatter(lat, ndcg, s=30)
            ax.annotate(name, (lat, ndcg), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.08)
        ax.set_xlabel("single-query latency p50 (ms, log scale)")
        ax.set_ylabel("nDCG@10")
        ax.set_title(d)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_markdown(results, out_dir: Path, wall_s: float, unavailable: dict[str, str] | None = None) -> Path:
    from benchmarks.runner import results_to_json

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = results_to_json(results)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot = _pareto_plot(rows, out_dir / "pareto.png")
    sig = _significance(results)
    lines = [
        "# distilir benchmark report",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python -m benchmarks --report` "
        f"on {platform.machine()} with {os.cpu_count()} CPUs; wall time {wall_s:.0f} s.",
        "",
        "| condition | pipeline | nDCG@10 | RR@10 | R@100 | published nDCG@10 (source) | Δ vs BM25 (p) "
        "| p50 ms | p99 ms | q/s batched | status |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        m, e, c = r.metrics, r.efficiency, r.condition
        pub = c.published.get("nDCG@10")
        d = sig.get(c.id)
        lines.append(
            "| "
            + " | ".join(
                [
                    c.id,
                    c.pipeline["type"]
                    + (f" {c.pipeline.get('retriever', '')}" if c.pipeline["type"] == "first_stage" else ""),
                    f"{m.get('nDCG@10', float('nan')):.4f}",
                    f"{m.get('RR@10', float('nan')):.4f}",
                    f"{m.get('R@100', float('nan')):.4f}",
                    f"{pub[0]} ({pub[1]})" if pub else "-",
                    f"{d[0]:+.4f} ({d[1]:.3g})" if d else "-",
                    f"{e['latency_p50_ms']:.2f}" if "latency_p50_ms" in e else "-",
                    f"{e['latency_p99_ms']:.2f}" if "latency_p99_ms" in e else "-",
                    f"{e['qps_batched']:.0f}" if "qps_batched" in e else "-",
                    "OK" if r.ok else "FAIL",
                ]
            )
            + " |"
        )
    compared = _comparisons(results)
    if compared:
        lines += [
            "",
            "## Against a named baseline",
            "",
            "Conditions with `compare_to` (a distilled student against the model it started from): paired "
            "t-test over the queries, and per-query wins / ties / losses on nDCG@10.",
            "",
            "| condition | against | nDCG@10 | baseline nDCG@10 | Δ | p | W/T/L |",
            "|---|---|---:|---:|---:|---:|---|",
            *compared,
        ]
    if plot:
        lines += ["", "## Effectiveness against query latency", "", f"![Pareto chart]({plot.name})"]
    lines += [
        "",
        "Δ vs BM25: mean per-query nDCG@10 difference against the BM25 condition of the same "
        "dataset and split, with the p-value of a paired t-test over queries.",
        "",
    ]
    if unavailable:
        lines += [
            "## Not run: collection not on this machine",
            "",
            "These conditions are defined and run wherever their collection is available; here "
            "their data could not be found or downloaded. First line of each error:",
            "",
        ]
        lines += [f"- `{cid}`: {msg.splitlines()[0]}" for cid, msg in unavailable.items()]
        lines.append("")
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
