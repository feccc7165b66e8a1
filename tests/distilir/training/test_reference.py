"""The config reference page and the example config cannot drift from the code: the committed
``docs/training-config.md`` is what the dataclasses render to, every field documents itself, and the
README's example is ``docs/examples/run.yaml``, which the real loader accepts."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from distilir.training import add_train_parser, load_config
from distilir.training.reference import REFERENCE_FILE, REGENERATE, config_sections, reference_markdown

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "run.yaml"


def _train_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="distilir")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_the_committed_reference_is_what_the_config_renders():
    committed = (ROOT / REFERENCE_FILE).read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        f"{REFERENCE_FILE} is stale (a config field was added, removed or re-documented); regenerate it "
        f"with `{REGENERATE}` and commit it"
    )


def test_every_field_has_help_and_a_row():
    page = reference_markdown()
    for prefix, cls in config_sections():
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}" if prefix else f.name
            help_text = f.metadata.get("help")
            assert isinstance(help_text, str) and help_text.strip(), (
                f"{cls.__name__}.{f.name} has no help: declare it with _field(..., help='...')"
            )
            assert f"| `{key}` |" in page


def test_registry_choices_are_listed_from_the_registries():
    from distilir.losses import LOSSES
    from distilir.students import STUDENTS

    page = reference_markdown()
    for kind in [*STUDENTS.kinds(), *LOSSES.kinds()]:
        assert f"| `{kind}` |" in page
    assert "`{temperature: 0.05}`" in page  # InfoNCE's default, from its get_config_dict()
    # the students' params leave out what the config sets itself (model, max_length, device, FLOPS)
    splade_row = next(line for line in page.splitlines() if line.startswith("| `splade` |"))
    assert "flops_query" not in splade_row and "max_length" not in splade_row


def test_print_reference_prints_the_page(capsys):
    assert _train_cli(["train", "--print-reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_the_example_config_loads_and_names_what_exists(data_dir):
    """docs/examples/run.yaml through the real loader (no training): its keys and values are valid,
    its datasets, splits and student model exist, its losses build, and its evaluation reports every
    measure (no cutoff beyond the evaluated lists)."""
    from distilir_index.models import resolve_model

    from distilir.data import load_dataset
    from distilir.losses import build_loss

    config = load_config(EXAMPLE)
    assert config.data.teacher_store and config.data.dataset and config.eval.dataset
    assert load_dataset(config.data.dataset, data_dir=data_dir).queries(config.data.split)
    assert load_dataset(config.eval.dataset, data_dir=data_dir).qrels(config.eval.split)
    assert Path(resolve_model(config.student.model)).is_dir()
    build_loss("weighted-sum", losses=[dataclasses.asdict(spec) for spec in config.losses])
    assert config.eval.reported_measures()[1] == []
    assert config.data.split != config.eval.split  # trained and evaluated on different queries
    assert load_config(EXAMPLE, ["--optim.lr", "2e-5"]).optim.lr == 2e-5  # the README's override
    # every line carries its comment
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        assert "#" in line, f"docs/examples/run.yaml: {line!r} has no comment"


def test_the_readme_example_is_the_example_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Training config\n" in readme, "README.md lost its 'Training config' section"
    section = readme.split("\n## Training config\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block == EXAMPLE.read_text(encoding="utf-8"), (
        "the YAML block of README.md's 'Training config' section differs from docs/examples/run.yaml; "
        "make them the same text"
    )
    for needle in ("--print-config", "docs/training-config.md", "--optim.lr 2e-5"):
        assert needle in section


def test_quiet_means_no_progress(tmp_path, capsys):
    """``--quiet`` is ``--progress false``, whether given to ``train`` or before it."""
    assert _train_cli(["train", "--quiet", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["progress"] is False
    assert _train_cli(["train", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["progress"] is True
    parser = argparse.ArgumentParser(prog="distilir")
    parser.add_argument("--quiet", action="store_true")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--quiet", "train", "--print-config"])
    assert args.func(args) == 0
    assert yaml.safe_load(capsys.readouterr().out)["progress"] is False
