"""`distilir --help`: every subcommand has a description and one example, every flag a help text and
its default shown."""

import argparse
import subprocess
import sys

import pytest

from distilir.cli import build_parser


def _subparsers(parser, path=("distilir",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _subparsers(child, (*path, name))


ALL = list(_subparsers(build_parser()))
COMMANDS = ALL


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_flag_has_help_and_every_command_an_example(path, parser):
    assert "example:" in (parser.epilog or ""), f"{' '.join(path)} has no example"
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{' '.join(path)} {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    for action in parser._actions:
        default = action.default
        if action.option_strings and not action.required and default not in (None, False, argparse.SUPPRESS):
            # the default appears in the help text ("(default: 100)" or the help's own words)
            assert str(default) in text, f"{' '.join(path)} {action.option_strings[0]}: default not shown"


def test_split_defaults_say_why_they_differ():
    helps = {" ".join(p): sub.format_help() for p, sub in ALL}
    assert (
        "default: train" in helps["distilir candidates"] and "eval uses test" in helps["distilir candidates"]
    )
    assert "default: test" in helps["distilir eval"]


def test_help_runs_as_a_command():
    out = subprocess.run(
        [sys.executable, "-m", "distilir.cli", "data", "validate", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "example: distilir data validate" in out.stdout


def test_quiet_silences_every_progress_bar(data_dir, tmp_path):
    import os

    env = {**os.environ, "DISTILIR_DATA_DIR": str(data_dir), "DISTILIR_CACHE": str(tmp_path)}
    argv = [sys.executable, "-m", "distilir.cli", "eval", "--dataset", "time", "--k", "100"]
    loud = subprocess.run(argv, capture_output=True, text=True, env=env)
    quiet = subprocess.run([*argv[:3], "--quiet", *argv[3:]], capture_output=True, text=True, env=env)
    assert loud.returncode == quiet.returncode == 0
    assert "q/s]" in loud.stderr  # the search bar, drawn even into a pipe
    assert "it/s]" not in quiet.stderr and "q/s]" not in quiet.stderr and "%|" not in quiet.stderr
    assert quiet.stdout == loud.stdout


def test_a_zero_default_is_shown_like_any_other(capsys):
    # argparse's `default in (None, False)` counts 0 as False: the formatter hid "(default: 0)"
    from distilir.cli import main as distilir_main

    with pytest.raises(SystemExit):
        distilir_main(["audit", "poison", "--help"])
    assert "attack (default: 0)" in " ".join(capsys.readouterr().out.split())
