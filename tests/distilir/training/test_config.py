"""TrainConfig: YAML loading, dotted overrides, validation, saving, the CLI parser."""

from __future__ import annotations

import argparse
import json
from hashlib import sha256

import pytest
import yaml

from distilir.training import ConfigError, TrainConfig, add_train_parser, load_config
from distilir.training.config import apply_overrides, parse_override_args

YAML = """
student: {kind: bi_encoder, model: all-MiniLM-L6-v2, max_length: 64}
losses:
  - {name: kl, weight: 1.0, params: {teacher_temperature: 2.0}}
  - {name: infonce, weight: 0.1}
data: {teacher_store: store, dataset: scifact, split: train, candidates_per_query: 8}
optim: {batch_size: 4, steps: 10, lr: 3.0e-5, seed: 7}
eval: {dataset: scifact, split: test, every_n_steps: 5}
output_dir: out
checkpoint_every: 5
"""


def _write(tmp_path, text=YAML):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_load_with_cli_overrides(tmp_path):
    cfg = load_config(
        _write(tmp_path),
        [
            "--optim.lr",
            "2e-5",
            "--optim.steps=20",
            "--losses.1.weight",
            "0.5",
            "--student.params.similarity",
            "cosine",
            "--eval.max_queries",
            "null",
        ],
    )
    assert cfg.optim.lr == 2e-5 and isinstance(cfg.optim.lr, float)  # YAML reads "2e-5" as a string
    assert cfg.optim.steps == 20 and cfg.optim.batch_size == 4 and cfg.optim.seed == 7
    assert [(s.name, s.weight) for s in cfg.losses] == [("kl", 1.0), ("infonce", 0.5)]
    assert cfg.losses[0].params == {"teacher_temperature": 2.0}
    assert cfg.student.params == {"similarity": "cosine"} and cfg.student.max_length == 64
    assert cfg.eval.every_n_steps == 5 and cfg.eval.max_queries is None
    # a whole list replaced from one flag
    cfg2 = load_config(_write(tmp_path), ["--losses", "[{name: margin_mse}]"])
    assert [s.name for s in cfg2.losses] == ["margin-mse"]  # one spelling after the normaliser


def test_defaults_without_a_file():
    cfg = load_config(None, {"optim.steps": 3})
    assert (
        cfg.optim.steps == 3 and cfg.student.kind == "bi-encoder" and [s.name for s in cfg.losses] == ["kl"]
    )


@pytest.mark.parametrize(
    "text, needle, valid",
    [
        ("optim: {lrr: 1.0}", "'lrr'", "lr"),
        ("stuff: 1", "'stuff'", "optim"),
        ("losses: [{name: kl, wieght: 2}]", "'wieght'", "weight"),
    ],
)
def test_unknown_yaml_keys_are_rejected_with_the_valid_ones(tmp_path, text, needle, valid):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert (
        needle in message
        and "Valid keys there:" in message
        and valid in message.split("Valid keys there:")[1]
    )


def test_unknown_override_is_rejected_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"optim has no field 'lrate'.*Valid fields there: .*\blr\b"):
        load_config(_write(tmp_path), ["--optim.lrate", "1e-5"])
    with pytest.raises(ConfigError, match="index 5 is out of range"):
        load_config(_write(tmp_path), ["--losses.5.weight", "1"])
    with pytest.raises(ConfigError, match="has no value"):
        parse_override_args(["--optim.lr"])


@pytest.mark.parametrize(
    "override, field",
    [
        ({"optim.lr": "fast"}, "optim.lr"),
        ({"optim.lr": -1}, "optim.lr"),
        ({"optim.batch_size": 0}, "optim.batch_size"),
        ({"optim.steps": 2.5}, "optim.steps"),
        ({"student.kind": "colbert"}, "student.kind"),
        ({"data.candidates_per_query": 1}, "data.candidates_per_query"),
        ({"data.positives": "bm25"}, "data.positives"),
        ({"losses": [{"name": "mse"}]}, "losses"),
        ({"losses": [{"name": "kl"}, {"name": "kl"}]}, "losses"),
        ({"losses.0.weight": 0}, "weight"),
        ({"eval.metric": "nDCG@"}, "eval.metric"),
        ({"eval.mode": "index"}, "eval.mode"),
        ({"keep_last": 0}, "keep_last"),
        ({"progress": "maybe"}, "progress"),
        ({"student.params": {"flops_query": 1.0}}, "student.params"),
    ],
)
def test_bad_values_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path), override)
    assert field in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize(
    "override, limit, within",
    [
        ({"eval.metric": "R@100", "eval.depth": 20}, "eval.depth 20", "R@20"),  # reranking 20 candidates
        ({"eval.metric": "nDCG@10", "eval.depth": 100, "eval.k": 5}, "eval.k 5", "nDCG@5"),
        ({"eval.metric": "P(rel=2)@10", "eval.mode": "retrieve", "eval.k": 8}, "eval.k 8", "P(rel=2)@8"),
    ],
)
def test_a_headline_metric_cut_off_beyond_the_evaluated_lists_is_refused(override, limit, within):
    """A cutoff past the run's end measures the run at its end under another name (R@100 of 20
    reranked documents is their R@20): refused before training, naming the measure to report."""
    with pytest.raises(ConfigError, match="eval.metric") as info:
        load_config(None, override)
    assert limit in str(info.value) and f"report {within}" in str(info.value)


def test_measures_past_the_list_depth_are_split_off():
    """RR@10 and R@k are reported beside the headline only when they fit in the evaluated lists."""
    reranked = load_config(None, {"eval.depth": 20}).eval  # k stays 100
    assert reranked.list_depth == 20
    assert reranked.reported_measures() == (["nDCG@10", "RR@10"], ["R@100"])
    short = load_config(None, {"eval.metric": "nDCG@5", "eval.k": 5, "eval.mode": "retrieve"}).eval
    assert short.reported_measures() == (["nDCG@5", "R@5"], ["RR@10"])
    assert load_config(None, {"eval.metric": "AP"}).eval.reported_measures() == (["AP", "RR@10", "R@100"], [])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(_write(tmp_path), ["--optim.lr", "1e-4"])
    saved = cfg.save(tmp_path / "run")
    assert saved.name == "config.yaml"
    again = load_config(saved)
    assert again.to_dict() == cfg.to_dict() and again == cfg
    assert yaml.safe_load(saved.read_text())["optim"]["lr"] == 1e-4


def test_trajectory_hash_covers_only_what_changes_the_weights(tmp_path):
    cfg = load_config(_write(tmp_path))
    same = cfg.replace(
        {"eval.every_n_steps": 1, "output_dir": "elsewhere", "checkpoint_every": 1, "progress": False}
    )
    assert same.trajectory_hash() == cfg.trajectory_hash()
    for change in (
        {"optim.lr": 1e-3},
        {"optim.seed": 8},
        {"losses.1.weight": 0.2},
        {"data.candidates_per_query": 4},
    ):
        assert cfg.replace(change).trajectory_hash() != cfg.trajectory_hash(), change


def test_a_field_added_later_keeps_older_checkpoints_resumable(tmp_path):
    # Checkpoints written before optim.head_lr existed hashed the trajectory sections without it;
    # at its neutral value (null) the hash must be that same hash, and any other value changes it.
    cfg = load_config(_write(tmp_path))
    d = cfg.to_dict()
    before = {key: d[key] for key in ("student", "losses", "flops", "data", "optim")}
    del before["optim"]["head_lr"]
    old_hash = sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert cfg.optim.head_lr is None and cfg.trajectory_hash() == old_hash
    assert cfg.replace({"optim.head_lr": 1e-3}).trajectory_hash() != old_hash
    # Checkpoints written while the field was hashed spelled out (null) resume too.
    spelled = sha256(
        json.dumps(cfg.trajectory_dict() | {"optim": cfg.to_dict()["optim"]}, sort_keys=True).encode()
    )
    assert cfg.accepted_trajectory_hashes() == {old_hash, spelled.hexdigest()[:16]}
    assert cfg.replace({"optim.lr": 1.0}).accepted_trajectory_hashes().isdisjoint({old_hash})


def test_apply_overrides_does_not_touch_its_input():
    data = {"optim": {"lr": 1.0}}
    out = apply_overrides(data, {"optim.lr": "2"})
    assert data == {"optim": {"lr": 1.0}} and out == {"optim": {"lr": 2}}


def _parser():
    parser = argparse.ArgumentParser(prog="distilir")
    parser.add_argument("--data-dir", default=None)
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_collects_dotted_flags_and_prints_the_resolved_config(tmp_path, capsys):
    path = _write(tmp_path)
    args = _parser().parse_args(
        [
            "train",
            "--config",
            str(path),
            "--optim.lr",
            "4e-5",
            "--resume",
            "auto",
            "--output_dir=run2",
            "--print-config",
        ]
    )
    assert args.resume == "auto" and args.print_config
    assert args.overrides == ["--optim.lr", "4e-5", "--output_dir=run2"]
    assert args.func(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 4e-5 and printed["output_dir"] == "run2"
    assert TrainConfig.from_dict(printed).optim.steps == 10


def test_cli_rejects_unknown_flag_with_the_valid_fields(tmp_path):
    args = _parser().parse_args(
        ["train", "--config", str(_write(tmp_path)), "--optim.lrr", "1", "--print-config"]
    )
    with pytest.raises(ConfigError, match="Valid fields there"):
        args.func(args)
