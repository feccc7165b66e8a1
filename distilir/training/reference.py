"""The reference page of the training config, rendered from the config dataclasses themselves.

``docs/training-config.md`` is this module's output, committed; a test compares the two, so a field
added, removed or re-documented without regenerating the page fails the suite with the command to
run. Everything on the page comes from code:

* one section per dataclass of :mod:`distilir.training.config`, in the order ``TrainConfig`` nests
  them, introduced by the first paragraph of its docstring;
* one row per field: dotted key, annotation, default (as YAML), ``metadata["help"]``; fixed choices
  from ``metadata["choices"]``;
* the values of registry-backed fields (``student.kind``, ``losses.<i>.name``) from the registry named
  in ``metadata["registry"]``: each kind's one-line help (its class's ``help``, else the first line
  of its docstring) and the ``params`` it accepts with their defaults (a loss's
  ``get_config_dict()``, a student's constructor arguments that the config does not set itself).

Regenerate with ``distilir train --print-reference > docs/training-config.md``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing
from typing import Any

import yaml

from distilir.training.config import TrainConfig

__all__ = ["REFERENCE_FILE", "REGENERATE", "config_sections", "reference_markdown"]

#: Where the page lives, relative to the repository root.
REFERENCE_FILE = "docs/training-config.md"
#: The command that rewrites it.
REGENERATE = f"distilir train --print-reference > {REFERENCE_FILE}"


def config_sections() -> list[tuple[str, type]]:
    """``(dotted prefix, dataclass)`` of the config, top level first: ``("", TrainConfig)``,
    ``("student", StudentConfig)``, ``("losses.<i>", LossSpec)``, ..."""
    out: list[tuple[str, type]] = [("", TrainConfig)]
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append((f.name, tp))
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out.append((f"{f.name}.<i>", typing.get_args(tp)[0]))
    return out


def reference_markdown() -> str:
    """The Markdown reference of :class:`~distilir.training.config.TrainConfig` (the text of
    ``docs/training-config.md``)."""
    lines = [
        f"<!-- Generated from distilir/training/config.py; do not edit. Regenerate: {REGENERATE} -->",
        "",
        "# Training config reference",
        "",
        "Every key `distilir train --config run.yaml` reads, generated from the config dataclasses of "
        "`distilir/training/config.py` (field annotations, defaults and `metadata['help']`), so it "
        f"matches the code: `{REGENERATE}` rewrites it and a test fails when it is stale.",
        "",
        "Every key is optional and takes the default shown. A commented minimal config is "
        "[`examples/run.yaml`](examples/run.yaml); `distilir train --config run.yaml --print-config` "
        "prints the resolved config with every default filled in. Any key can be overridden on the "
        "command line by its dotted path, the value parsed as YAML: `--optim.lr 2e-5`, "
        "`--losses.0.weight 0.5`, `--losses '[{name: kl}, {name: infonce, weight: 0.1}]'`; unknown "
        "keys are rejected with the valid ones listed.",
        "",
        "Sections: "
        + ", ".join(f"[{_title(prefix)}](#{_anchor(prefix)})" for prefix, _ in config_sections()),
    ]
    for prefix, cls in config_sections():
        lines += ["", f"## {_title(prefix)}", "", _intro(cls), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}" if prefix else f.name
            lines.append(
                f"| `{key}` | {_cell(_type(f))} | {_cell(_default(f))} | {_cell(f.metadata['help'])} |"
            )
        for f in dataclasses.fields(cls):
            if "registry" in f.metadata:
                key = f"{prefix}.{f.name}" if prefix else f.name
                lines += ["", *_registry_table(key, f.metadata["registry"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- pieces


def _title(prefix: str) -> str:
    return f"`{prefix}`" if prefix else "Top level"


def _anchor(prefix: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation other than ``-`` and ``_`` dropped."""
    return re.sub(r"[^\w\- ]", "", _title(prefix).lower()).replace(" ", "-")


def _intro(cls: type) -> str:
    """The first paragraph of the class docstring, on one line, in Markdown."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return _markdown(" ".join(doc.split("\n\n")[0].split()))


def _markdown(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)  # :class:`x` -> `x`
    return text.replace("``", "`")


def _type(f: dataclasses.Field) -> str:
    """The fixed choices, else the annotation as written (``from __future__ import annotations`` keeps
    it a string), ``None`` spelled as YAML's ``null``."""
    if "choices" in f.metadata:
        return " | ".join(f"`{c}`" for c in f.metadata["choices"])
    return f"`{str(f.type).replace('None', 'null')}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:  # pragma: no cover - every config field has a default
        return "required"
    if dataclasses.is_dataclass(value):
        return f"[its section](#{_anchor(f.name)})"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        value = [_essentials(v) for v in value]
    return f"`{_yaml(value)}`"


def _essentials(obj: Any) -> dict[str, Any]:
    """A dataclass as a mapping without the fields still at their defaults (``{name: kl}``)."""
    out = {}
    for f in dataclasses.fields(obj):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if getattr(obj, f.name) != default or f.name == "name":
            out[f.name] = getattr(obj, f.name)
    return out


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _cell(text: str) -> str:
    """One table cell: one line, ``|`` escaped (inside code spans too, as GFM tables need), ``*``
    escaped outside code spans (``**arguments`` is not bold)."""
    parts = " ".join(text.split()).split("`")
    return "`".join(p if i % 2 else p.replace("*", "\\*") for i, p in enumerate(parts)).replace("|", "\\|")


def _registry_table(key: str, registry: str) -> list[str]:
    module, _, name = registry.partition(":")
    reg = getattr(importlib.import_module(module), name)
    lines = [
        f"Values of `{key}`, from the registry `{module}.{name}`:",
        "",
        "| value | what it is | `params` (defaults) |",
        "|---|---|---|",
    ]
    for kind in reg.kinds():
        cls = reg.get(kind)
        lines.append(f"| `{kind}` | {_cell(_markdown(_one_line(cls)))} | {_params(cls)} |")
    return lines


def _one_line(cls: type) -> str:
    help_text = getattr(cls, "help", "") or ""
    if help_text:
        return help_text
    doc = inspect.cleandoc(cls.__doc__ or "")
    return doc.split("\n\n")[0].replace("\n", " ")


def _params(cls: type) -> str:
    """The ``params`` a loss or student class takes, with their defaults, as YAML."""
    from distilir.losses.base import DistillationLoss

    if issubclass(cls, DistillationLoss):
        try:  # a loss describes itself; one that cannot be built without arguments has none to list
            params = cls.from_spec().get_config_dict()
        except (TypeError, ValueError):
            return "—"
    else:
        params = _constructor_params(cls)
    return f"`{_yaml(params)}`" if params else "—"


def _constructor_params(cls: type) -> dict[str, Any]:
    """Constructor arguments with defaults, less those the config sets itself (``student.model``,
    ``student.max_length``, the top-level ``device``; what the class takes from the run through
    ``training_kwargs``, e.g. SPLADE's FLOPS weights from the ``flops`` section)."""
    from distilir.training.config import FlopsConfig, StudentConfig

    set_by_config = {f.name for f in dataclasses.fields(StudentConfig)} | {
        f.name for f in dataclasses.fields(TrainConfig)
    }
    if hasattr(cls, "training_kwargs"):
        set_by_config |= set(cls.training_kwargs(flops=FlopsConfig(), seed=0))
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in set_by_config:
            continue
        out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out
