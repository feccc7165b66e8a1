"""`distilir train`: run a distillation from one YAML file, any field overridable by a flag.

    distilir train --config train.yaml
    distilir train --config train.yaml --optim.lr 2e-5 --optim.steps 500 --output_dir runs/x
    distilir train --config train.yaml --resume auto          # continue the latest checkpoint
    distilir train --config train.yaml --print-config         # show the resolved config and exit
    distilir train --print-reference > docs/training-config.md  # the reference of every config key

The lead's ``distilir.cli`` wires it in with ``add_train_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_train_parser", "cmd_train"]


def _epilog() -> str:
    """The overrides help, its section and field names read from the config (not a second list)."""
    import dataclasses
    import textwrap

    from distilir.training.config import TrainConfig
    from distilir.training.reference import REFERENCE_FILE, config_sections

    sections = [prefix.split(".")[0] for prefix, _ in config_sections() if prefix]
    top = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in sections]
    text = (
        "Every config field can be overridden with its dotted path, e.g. --optim.lr 2e-5, --student.model "
        "paraphrase-MiniLM-L3-v2, --losses.0.weight 0.5, --losses '[{name: kl}, {name: infonce, weight: "
        f"0.1}}]', --eval.every_n_steps 100. Sections: {', '.join(sections)}; top-level fields: "
        f"{', '.join(top)}. Every key with its type, default and meaning: {REFERENCE_FILE} "
        "(--print-reference prints it)."
    )
    example = "example: distilir train --config docs/examples/run.yaml --optim.lr 2e-5 --resume auto"
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False) + "\n\n" + example


class _TrainParser(argparse.ArgumentParser):
    """Collects the ``--section.field VALUE`` tokens it does not know into ``namespace.overrides``
    instead of failing, so the top-level ``parse_args`` sees no unrecognised arguments. They are
    checked against the config's fields (with the list of valid ones) when the config is built."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        overrides = list(getattr(namespace, "overrides", None) or [])
        rest: list[str] = []
        i = 0
        extras = list(extras)
        while i < len(extras):
            tok = extras[i]
            if tok.startswith("--") and len(tok) > 2:
                overrides.append(tok)
                if "=" not in tok and i + 1 < len(extras):
                    overrides.append(extras[i + 1])
                    i += 1
            else:
                rest.append(tok)
            i += 1
        namespace.overrides = overrides
        return namespace, rest


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train`` on the ``distilir`` subcommands; the handler is ``args.func``."""
    p = subparsers.add_parser(
        "train",
        help="distil teacher scores into a student (config YAML + --section.field overrides)",
        description=__doc__.split("\n\n")[0],
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _TrainParser
    p.add_argument(
        "--config", default=None, help="YAML file with the run's settings (default: built-in defaults)"
    )
    p.add_argument(
        "--resume",
        default=None,
        help="'auto' = continue from the latest checkpoint in output_dir, or a checkpoint folder",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument(
        "--print-reference",
        action="store_true",
        help="print the Markdown reference of every config key (docs/training-config.md) and exit",
    )
    p.add_argument(  # SUPPRESS: a `distilir --quiet train` given before the subcommand is kept
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars: the same as --progress false (training, evaluation, model loading)",
    )
    p.set_defaults(func=cmd_train, overrides=[])
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from distilir.training.config import load_config
    from distilir.training.trainer import Trainer

    if getattr(args, "print_reference", False):
        from distilir.training.reference import reference_markdown

        print(reference_markdown(), end="")
        return 0
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "quiet", False):
        overrides += ["--progress", "false"]
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    result = Trainer(config, data_dir=getattr(args, "data_dir", None)).train(resume=args.resume)
    summary = {
        "output_dir": str(result.output_dir),
        "student": str(result.student_dir) if result.student_dir else None,
        "steps": result.steps,
        "final_train_loss": result.losses[-1] if result.losses else None,
        "metrics": result.final_metrics,
    }
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distilir.training train ...`` (the same as ``distilir train ...``)."""
    parser = argparse.ArgumentParser(prog="distilir")
    parser.add_argument("--data-dir", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
