"""Query generators backed by language models: a local causal LM, an OpenAI-compatible server, and a
seq2seq doc2query model.

* :class:`CausalLMQueries` (``llm``): any causal LM that transformers loads — an alias such as
  ``smollm2-135m-instruct`` (packaged offline), a ``.gguf`` file, a folder or a hub id — through
  :func:`distilir.teachers.llm_common.load_causal_lm`. Prompts are chosen per query type; instruct
  models with a chat template get it applied. ``few_shot`` examples (query texts, e.g. a
  collection's own training queries) are placed in the prompt, Promptagator-style.
* :class:`OpenAIQueries` (``openai``): the same prompts sent to ``POST {base_url}/v1/completions``
  of a vLLM / llama.cpp / OpenAI-compatible server.
* :class:`Doc2QueryQueries` (``doc2query``): a seq2seq model by hub id or folder
  (``doc2query/msmarco-t5-base-v1`` style), sampled ``per_doc`` times.

Every generator's description holds the model identity, the full prompt text and the sampling
settings, so they are part of the query store's key. Generation is seeded per document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from distilir.queries.base import QUERY_TYPES, QueryGenerator, QueryGeneratorError, check_types
from distilir.types import Document

__all__ = ["PROMPTS", "CausalLMQueries", "Doc2QueryQueries", "OpenAIQueries", "clean_generation"]

#: One instruction per query type; ``{passage}`` and ``{examples}`` are filled in.
PROMPTS: dict[str, str] = {
    "question": (
        "Write one short search question that the passage below answers.\n{examples}"
        "Passage: {passage}\nQuestion:"
    ),
    "claim": (
        "Write one short factual claim that the passage below supports or refutes.\n{examples}"
        "Passage: {passage}\nClaim:"
    ),
    "keywords": (
        "Write a short keyword search query (3 to 6 words) for the passage below.\n{examples}"
        "Passage: {passage}\nQuery:"
    ),
    "title": "Write a short title for the passage below.\n{examples}Passage: {passage}\nTitle:",
}
_LABEL = {"question": "Question", "claim": "Claim", "keywords": "Query", "title": "Title"}
_LEAD = re.compile(r"^\s*(?:question|claim|query|title|q)\s*[:\-]\s*", re.I)


def clean_generation(text: str, max_words: int = 40) -> str:
    """First line of a generation, without a leading label, quotes or list markers; cut at
    ``max_words``."""
    line = text.strip().split("\n")[0].strip()
    line = _LEAD.sub("", line).strip().strip("\"'`*").strip()
    line = re.sub(r"^\d+[.)]\s*", "", line)
    return " ".join(line.split()[:max_words])


class _PromptedGenerator(QueryGenerator):
    """What the LLM generators share: types, prompts, few-shot examples, passage truncation."""

    def __init__(
        self,
        types: Sequence[str] | str = ("question",),
        per_doc: int = 1,
        few_shot: Sequence[str] = (),
        max_passage_words: int = 200,
        max_new_tokens: int = 32,
        temperature: float = 0.7,
        top_p: float = 0.95,
    ) -> None:
        self.types = check_types(types, tuple(PROMPTS), self.kind)
        if per_doc < 1:
            raise QueryGeneratorError(f"{self.kind}: per_doc must be >= 1, got {per_doc}")
        if max_new_tokens < 1 or max_passage_words < 1:
            raise QueryGeneratorError(f"{self.kind}: max_new_tokens and max_passage_words must be >= 1")
        if temperature < 0 or not 0 < top_p <= 1:
            raise QueryGeneratorError(
                f"{self.kind}: need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
            )
        self.per_doc = int(per_doc)
        self.few_shot = tuple(str(x) for x in few_shot)
        self.max_passage_words = int(max_passage_words)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def prompt(self, doc: Document, qtype: str) -> str:
        words = doc.full_text.split()
        passage = " ".join(words[: self.max_passage_words])
        examples = "".join(f"Example {_LABEL[qtype].lower()}: {x}\n" for x in self.few_shot)
        return PROMPTS[qtype].replace("{examples}", examples).replace("{passage}", passage)

    def _settings(self) -> dict[str, Any]:
        return {
            "types": list(self.types),
            "per_doc": self.per_doc,
            "prompts": {t: PROMPTS[t] for t in self.types},
            "few_shot": list(self.few_shot),
            "max_passage_words": self.max_passage_words,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    def _jobs(self, docs: Sequence[Document]) -> list[tuple[int, str, int]]:
        """(document index, type, sample number) for every generation a batch asks for."""
        return [(i, t, s) for i in range(len(docs)) for t in self.types for s in range(self.per_doc)]


class CausalLMQueries(_PromptedGenerator):
    """Queries sampled from a local causal LM (see the module docstring).

    Args:
        model: alias, ``.gguf`` file, folder or hub id (``smollm2-135m-instruct`` ships offline).
        types: query types to write (``question``, ``claim``, ``keywords``, ``title``).
        per_doc: samples per document and type.
        few_shot: example queries placed in every prompt.
        batch_size: prompts per forward pass (left padding).
        dtype: model dtype.
    """

    kind = "llm"
    help = "a causal LM through transformers (smollm2-135m-instruct offline, any hub LLM online)"

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        *,
        batch_size: int = 8,
        dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from distilir.teachers.llm_common import load_causal_lm

        if batch_size < 1:
            raise QueryGeneratorError(f"llm: batch_size must be >= 1, got {batch_size}")
        self.lm = load_causal_lm(model, dtype=dtype)
        self.batch_size = int(batch_size)
        tok = self.lm.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token

    def _render(self, text: str) -> str:
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        import torch

        model, tok = self.lm
        jobs = self._jobs(docs)
        out: list[list[tuple[str, str]]] = [[] for _ in docs]
        # one seed per batch of documents (the first document's): the same batch always samples the same
        torch.manual_seed(int(seeds[0]) if seeds else 0)
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            prompts = [self._render(self.prompt(docs[i], t)) for i, t, _ in chunk]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"],
                    max_new_tokens=self.max_new_tokens,
                    do_sample=self.temperature > 0,
                    temperature=self.temperature if self.temperature > 0 else None,
                    top_p=self.top_p if self.temperature > 0 else None,
                    pad_token_id=tok.pad_token_id,
                )
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for (i, t, _), text in zip(chunk, texts, strict=True):
                query = clean_generation(text)
                if query:
                    out[i].append((query, t))
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"model": self.lm.describe(), **self._settings()}


class OpenAIQueries(_PromptedGenerator):
    """Queries from an OpenAI-compatible completions server (vLLM, llama.cpp, OpenAI).

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (``/v1/completions`` is appended).
        model: the model name the server expects.
        api_key: sent as a bearer token when given (or ``$OPENAI_API_KEY``).
        timeout: seconds per request.
    """

    kind = "openai"
    help = "an OpenAI-compatible completions endpoint (vLLM / llama.cpp servers)"

    def __init__(
        self, base_url: str, *, model: str, api_key: str | None = None, timeout: float = 60.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        import os

        import httpx

        if not str(base_url).startswith(("http://", "https://")):
            raise QueryGeneratorError(
                f"openai: base_url must start with http:// or https://, got {base_url!r}"
            )
        self.base_url = str(base_url).rstrip("/").removesuffix("/v1")
        self.model = model
        key = api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        out: list[list[tuple[str, str]]] = [[] for _ in docs]
        for i, t, s in self._jobs(docs):
            body = {
                "model": self.model,
                "prompt": self.prompt(docs[i], t),
                "max_tokens": self.max_new_tokens,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "seed": int(seeds[i] + s) % (2**31),
            }
            resp = self.client.post(f"{self.base_url}/v1/completions", json=body)
            if resp.status_code != 200:
                raise QueryGeneratorError(
                    f"openai: {self.base_url}/v1/completions answered {resp.status_code}: {resp.text[:300]}"
                )
            query = clean_generation(resp.json()["choices"][0]["text"])
            if query:
                out[i].append((query, t))
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, **self._settings()}


class Doc2QueryQueries(QueryGenerator):
    """Queries sampled from a seq2seq doc2query model (hub id or folder).

    Args:
        model: e.g. ``doc2query/msmarco-t5-base-v1`` or a local folder.
        per_doc: samples per document.
        max_length: input tokens; max_new_tokens: output tokens; top_k / top_p: sampling.
        query_type: the type recorded for its queries (``question`` for MS MARCO-trained models).
    """

    kind = "doc2query"
    help = "a seq2seq doc2query model by hub id or folder (T5 style)"

    def __init__(
        self,
        model: str,
        *,
        per_doc: int = 3,
        max_length: int = 384,
        max_new_tokens: int = 48,
        top_k: int = 10,
        top_p: float = 0.95,
        query_type: str = "question",
        batch_size: int = 8,
    ) -> None:
        from distilir_index.models import fingerprint_folder
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if per_doc < 1 or batch_size < 1:
            raise QueryGeneratorError(
                f"doc2query: per_doc and batch_size must be >= 1, got {per_doc}, {batch_size}"
            )
        if query_type not in QUERY_TYPES:
            raise QueryGeneratorError(
                f"doc2query: query_type must be one of {QUERY_TYPES}, got {query_type!r}"
            )
        self.model_name = str(model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(self.model_name).eval()
        self.weights = fingerprint_folder(self.model_name) if re.match(r"^[./~]", self.model_name) else None
        self.per_doc = int(per_doc)
        self.max_length = int(max_length)
        self.max_new_tokens = int(max_new_tokens)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.query_type = query_type
        self.batch_size = int(batch_size)

    def generate(self, docs: Sequence[Document], seeds: Sequence[int]) -> list[list[tuple[str, str]]]:
        import torch

        out: list[list[tuple[str, str]]] = [[] for _ in docs]
        torch.manual_seed(int(seeds[0]) if seeds else 0)
        for start in range(0, len(docs), self.batch_size):
            chunk = docs[start : start + self.batch_size]
            enc = self.tokenizer(
                [d.full_text for d in chunk],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"],
                    max_new_tokens=self.max_new_tokens,
                    do_sample=True,
                    top_k=self.top_k,
                    top_p=self.top_p,
                    num_return_sequences=self.per_doc,
                )
            texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
            for j, text in enumerate(texts):
                query = clean_generation(text)
                if query:
                    out[start + j // self.per_doc].append((query, self.query_type))
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "weights": self.weights,
            "per_doc": self.per_doc,
            "max_length": self.max_length,
            "max_new_tokens": self.max_new_tokens,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "query_type": self.query_type,
        }
