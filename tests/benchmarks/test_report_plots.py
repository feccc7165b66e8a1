"""The report's figures: training curves (one panel per run, four per row, from metrics.jsonl) and
the Pareto chart (one panel per dataset with a trade-off to show, redrawn from results.json)."""

from __future__ import annotations

import json

import matplotlib.image as mpimg

from benchmarks.report import pareto_plot_from_json, plot_training_curves, train_curve


def _run(folder, losses):
    folder.mkdir(parents=True)
    lines = [{"type": "train", "step": i + 1, "loss": v} for i, v in enumerate(losses)]
    lines.append({"type": "eval", "step": len(losses), "nDCG@10": 0.5})  # not a training line
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def test_runs_wrap_four_per_row_and_runs_without_metrics_are_left_out(tmp_path):
    runs = {f"run {i}": _run(tmp_path / f"r{i}", [1.0 / (s + 1) for s in range(12)]) for i in range(5)}
    runs["not trained"] = tmp_path / "missing"
    out = plot_training_curves(runs, tmp_path / "curves.png")
    height, width = mpimg.imread(out).shape[:2]
    # 5 runs -> 2 rows of 4 panels at 4 x 3.2 inches each, 110 dpi
    assert (width, height) == (4 * 4 * 110, round(2 * 3.2 * 110))
    one = plot_training_curves({"run 0": runs["run 0"]}, tmp_path / "one.png")
    assert mpimg.imread(one).shape[:2] == (round(3.2 * 110), 4 * 110)
    assert plot_training_curves({"x": tmp_path / "missing"}, tmp_path / "none.png") is None


def test_a_resumed_run_is_one_curve_with_the_replayed_steps_from_the_resumed_process():
    first = [{"type": "train", "step": s, "loss": 1.0} for s in range(1, 8)]  # killed after step 7
    resumed = [{"type": "train", "step": s, "loss": 2.0} for s in range(5, 10)]  # from checkpoint 4
    steps, losses = train_curve([*first, {"type": "eval", "step": 7}, *resumed])
    assert steps == list(range(1, 10))
    assert losses == [1.0] * 4 + [2.0] * 5


def _row(cid, ndcg, p50=None):
    eff = {} if p50 is None else {"latency_p50_ms": p50}
    return {"id": cid, "metrics": {"nDCG@10": ndcg}, "efficiency": eff}


def test_pareto_chart_has_a_panel_per_dataset_with_a_trade_off(tmp_path):
    rows = [
        _row("scifact/bm25", 0.68, 0.2),
        _row("scifact/minilm", 0.65, 20.0),
        _row("trec-dl-2019-passage-pool/bm25", 0.44, 0.3),
        _row("trec-dl-2019-passage-pool/splade", 0.67, 4.0),
        _row("trec-dl-2019-passage-pool/shipped-run", 0.52),  # a run file: no latency, not drawn
        _row("vaswani/bm25", 0.44, 0.4),  # one system: nothing to trade off, no panel
    ]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    out = pareto_plot_from_json(tmp_path / "results.json", tmp_path / "pareto.png")
    assert mpimg.imread(out).shape[:2] == (5 * 120, 2 * 7 * 120)  # two panels side by side
    (tmp_path / "one.json").write_text(json.dumps([_row("vaswani/bm25", 0.44, 0.4)]))
    assert pareto_plot_from_json(tmp_path / "one.json", tmp_path / "none.png") is None
