"""Build any teacher from a one-line spec, a dict, or a YAML/JSON file.

Grammar of a string spec::

    spec      := KIND [":" TARGET] ["?" OPTIONS]
    OPTIONS   := key=value ("&" key=value)*          values: ints, floats, true/false, none, else strings
    ensemble  := "ensemble" ["?" OPTIONS] ":" member ("+" member)*
    member    := spec ["*" WEIGHT]                    WEIGHT defaults to 1

    cross-encoder:cross-encoder/ms-marco-MiniLM-L6-v2?max_length=256
    bi-encoder:all-mpnet-base-v2                     (TARGET defaults: all-mpnet-base-v2)
    splade:splade-tiny                               (TARGET defaults: splade-tiny)
    bm25?k1=1.2&b=0.75                               (needs build_teacher(spec, corpus={docid: text}),
                                                      or TARGET = a JSON file of BM25Stats.to_dict())
    llm-pointwise:smollm2-135m-instruct?mode=query_likelihood
    llm-listwise:PATH?window=20&stride=10
    openai:http://127.0.0.1:8000?model=NAME[&teacher=pointwise|listwise&mode=...&window=...]
    ensemble?normalization=rank:bi-encoder:all-mpnet-base-v2*2+splade:splade-tiny+bm25

In ensemble specs ``+`` separates members and a trailing ``*number`` is a weight; a model path that
contains ``+`` must use the dict form. OPTIONS become keyword arguments of the teacher class
(:class:`CrossEncoderTeacher`, :class:`BiEncoderTeacher`, :class:`SparseTeacher`,
:class:`BM25Teacher`, ``LLMPointwiseTeacher``, ``LLMListwiseTeacher``; for ``openai`` the keywords
of ``OpenAIBackend`` go to the backend and the rest to the teacher).

Dict / YAML form (the same keys)::

    {"kind": "ensemble", "normalization": "zscore",
     "members": [{"kind": "bi-encoder", "model": "all-mpnet-base-v2", "weight": 1},
                 {"spec": "splade:splade-tiny", "weight": 1},
                 {"kind": "bm25", "k1": 0.9}]}

Teacher classes are imported only when built, so ``llm`` extras are needed only for LLM teachers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir_index.registry import Registry, parse_options

from distilir.teachers.base import Teacher, TeacherError

__all__ = ["DEFAULT_OFFLINE_TEACHER", "TEACHERS", "build_teacher", "parse_teacher_spec"]

#: all-mpnet-base-v2 + SPLADE-tiny + BM25, z-score normalised, equal weights: the strongest teacher
#: that runs offline here (no trained cross-encoder ships on PyPI; see /work/shared/MODELS.md).
DEFAULT_OFFLINE_TEACHER = (
    "ensemble?normalization=zscore:bi-encoder:all-mpnet-base-v2*1+splade:splade-tiny*1+bm25*1"
)

#: Teacher kinds: kind -> "module:Class", imported when built (so LLM extras are needed only for LLM
#: teachers). Each class has ``kind``, ``help`` (what TARGET is), ``example`` and
#: ``from_spec(target, options, corpus=None)``.
TEACHERS = Registry(
    "teacher",
    {
        "cross-encoder": "distilir.teachers.cross_encoder:CrossEncoderTeacher",
        "bi-encoder": "distilir.teachers.bi_encoder:BiEncoderTeacher",
        "splade": "distilir.teachers.sparse:SparseTeacher",
        "bm25": "distilir.teachers.bm25:BM25Teacher",
        "llm-pointwise": "distilir.teachers.llm_pointwise:LLMPointwiseTeacher",
        "llm-listwise": "distilir.teachers.llm_listwise:LLMListwiseTeacher",
        "openai": "distilir.teachers.openai_backend:OpenAIBackend",
        "ensemble": "distilir.teachers.ensemble:EnsembleTeacher",
    },
    aliases={
        "ce": "cross-encoder",
        "crossencoder": "cross-encoder",
        "dense": "bi-encoder",
        "biencoder": "bi-encoder",
        "sparse": "splade",
        "pointwise": "llm-pointwise",
        "listwise": "llm-listwise",
    },
    error=TeacherError,
)
_TARGET_KEYS = ("target", "model", "url", "base_url", "path")


def _kind(name: str) -> str:
    try:
        return TEACHERS.normalize(name)
    except TeacherError:
        lines = "\n".join(
            f"  {kind:<14} TARGET = {cls.help}; e.g. {cls.example!r}"
            for kind, cls in ((k, TEACHERS.get(k)) for k in TEACHERS.kinds())
        )
        raise TeacherError(
            f"unknown teacher kind {name!r}. Valid kinds:\n{lines}\nDefault offline teacher: "
            f"{DEFAULT_OFFLINE_TEACHER!r}"
        ) from None


def _options(text: str, spec: str) -> dict[str, Any]:
    return parse_options(text, spec=spec, error=TeacherError)


def parse_teacher_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a spec into its dict form (``{"kind", "target", **options}``; ensembles get
    ``"members": [{..., "weight": w}, ...]``) without loading any model."""
    if isinstance(spec, Mapping):
        return _parse_mapping(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TeacherError(
            f"a teacher spec must be a non-empty string or a dict, got {spec!r}; "
            f"e.g. {DEFAULT_OFFLINE_TEACHER!r}"
        )
    spec = spec.strip()
    head, colon, rest = spec.partition(":")
    kind_name, q, head_opts = head.partition("?")
    kind = _kind(kind_name)
    if kind == "ensemble":
        if not colon or not rest.strip():
            raise TeacherError(
                f"ensemble spec {spec!r} has no members; e.g. {TEACHERS.get('ensemble').example!r}"
            )
        members = []
        for part in rest.split("+"):
            part = part.strip()
            body, star, weight = part.rpartition("*")
            w: Any = 1.0
            if star:
                try:
                    w = float(weight)
                except ValueError:
                    body, w = part, 1.0
            else:
                body = part
            if not body:
                raise TeacherError(f"empty ensemble member in {spec!r}")
            member = parse_teacher_spec(body)
            member["weight"] = w
            members.append(member)
        return {"kind": "ensemble", **_options(head_opts, spec), "members": members}
    if q:
        # options on the kind itself (e.g. "bm25?k1=1.2"); a TARGET after them is not allowed
        if colon:
            raise TeacherError(f"in {spec!r} options must come last: KIND:TARGET?key=value")
        return {"kind": kind, "target": None, **_options(head_opts, spec)}
    target, _, opts = rest.rpartition("?") if "?" in rest else (rest, "", "")
    return {"kind": kind, "target": target or None, **_options(opts, spec)}


def _parse_mapping(spec: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(spec)
    if "spec" in d:
        base = parse_teacher_spec(d.pop("spec"))
        base.update(d)
        return base
    if "kind" not in d:
        raise TeacherError(
            f"a teacher dict needs 'kind' (or 'spec'); got keys {sorted(d)}. "
            "e.g. {'kind': 'bi-encoder', 'model': 'all-mpnet-base-v2'}"
        )
    d["kind"] = _kind(str(d["kind"]))
    # for openai, "model" is the served model's name (an option), the target is the URL
    keys = tuple(k for k in _TARGET_KEYS if k != "model") if d["kind"] == "openai" else _TARGET_KEYS
    targets = [k for k in keys if k in d]
    if len(targets) > 1:
        raise TeacherError(f"teacher dict gives the target twice ({targets}); use one of them")
    d["target"] = d.pop(targets[0]) if targets else None
    if d["kind"] == "ensemble":
        members = d.get("members")
        if not isinstance(members, Sequence) or isinstance(members, str) or not members:
            raise TeacherError(
                "an ensemble dict needs 'members': a non-empty list of specs or dicts with 'weight'"
            )
        parsed = []
        for m in members:
            if isinstance(m, str):
                p = parse_teacher_spec(m)
                p.setdefault("weight", 1.0)
            else:
                p = _parse_mapping(m)
                p["weight"] = float(p.get("weight", 1.0))
            parsed.append(p)
        d["members"] = parsed
        d.pop("target", None)
    return d


def _load_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def build_teacher(
    spec: str | Mapping[str, Any] | os.PathLike[str], *, corpus: Any = None, **overrides: Any
) -> Teacher:
    """Build a teacher from a spec string, a dict, or a ``.yaml``/``.yml``/``.json`` file holding one.

    ``corpus`` (``{docid: text}``, a list of texts, or ``{docid: Document}``) is needed by ``bm25``
    (also inside ensembles) for its collection statistics. ``overrides`` are extra keyword arguments
    for the top-level teacher (e.g. ``device="cuda"``).
    """
    if isinstance(spec, os.PathLike) or (
        isinstance(spec, str) and spec.endswith((".yaml", ".yml", ".json")) and Path(spec).is_file()
    ):
        spec = _load_file(Path(spec))
    parsed = parse_teacher_spec(spec)  # type: ignore[arg-type]
    parsed.update(overrides)
    return _build(parsed, corpus)


def _build(d: dict[str, Any], corpus: Any) -> Teacher:
    d = dict(d)
    kind = d.pop("kind")
    target = d.pop("target", None)
    d.pop("weight", None)
    if kind == "ensemble":
        d["members"] = [(_build(m, corpus), float(m.get("weight", 1.0))) for m in d.pop("members")]
    try:
        return TEACHERS.get(kind).from_spec(target, d, corpus=corpus)
    except TypeError as exc:
        raise TeacherError(f"cannot build a {kind!r} teacher with options {sorted(d)}: {exc}") from exc
