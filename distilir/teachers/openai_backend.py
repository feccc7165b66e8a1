"""Scoring backend over an OpenAI-compatible *completions* endpoint (vLLM, SGLang, TGI, OpenAI's
legacy models, ...), usable by both LLM teachers in place of a local model::

    backend = OpenAIBackend("http://localhost:8000", model="HuggingFaceTB/SmolLM2-135M-Instruct")
    teacher = LLMPointwiseTeacher(backend, mode="query_likelihood")

Only ``POST {base_url}/v1/completions`` is used, with the legacy ``logprobs`` response
(``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``):

- query likelihood: ``echo=True, max_tokens=1, logprobs=0`` on ``prompt + continuation``; the
  continuation's tokens are those whose ``text_offset`` lies inside the continuation (templates put
  the boundary where tokenisers split anyway: before a space-prefixed word, after a newline or a
  special token). ``max_tokens=1`` rather than 0 because not every server accepts 0; the generated
  token lies past the text and is ignored.
- next-token scores (yes/no, listwise identifiers): ``max_tokens=1, logprobs=top_logprobs,
  temperature=0``; a candidate's score is its log-probability in the first position's
  ``top_logprobs``. Candidates missing from the top list are scored exactly by an echo request of
  ``prompt + candidate`` (the log-probability of the candidate's tokens), so no candidate is ever
  guessed. These scores are log-softmax values: logits minus one constant per prompt, so differences
  between candidates equal logit differences.

Truncation needs a tokenizer; the server's is not reachable through this API. Pass ``tokenizer`` (a
name/folder for ``AutoTokenizer`` or a tokenizer object) for exact token budgets; without it text is
cut by whitespace words, assuming 0.75 words per token (a rough English average).

Failures: connection errors, timeouts, 429 and 5xx are retried ``max_retries`` times with exponential
backoff; other 4xx fail at once. Every error is an :class:`OpenAIBackendError` that names the URL,
what the server said, and what to try.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from distilir.teachers.base import TeacherError

__all__ = ["OpenAIBackend", "OpenAIBackendError"]

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackendError(TeacherError):
    """The completions server could not be reached or did not answer as expected."""


class OpenAIBackend:
    """Client of an OpenAI-compatible completions endpoint that implements the LLM teachers' backend.

    Args:
        base_url: server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted too).
        model: the model name the server serves (sent as ``model``).
        api_key: bearer token; default ``$OPENAI_API_KEY`` if set. Never recorded in configs.
        timeout: seconds per request (connect, read and write).
        max_retries: extra attempts after a retryable failure.
        batch_size: prompts per request (the endpoint takes a list of prompts).
        top_logprobs: how many alternatives to request at the first generated position (OpenAI allows
            at most 5; vLLM 20 by default). 0 scores every candidate with an echo request.
        tokenizer: optional tokenizer (name, folder or object) for exact truncation.
    """

    score_kind = "logprob"
    kind = "openai"
    help = "the base URL of an OpenAI-compatible completions server"
    example = "openai:http://127.0.0.1:8000?model=NAME"

    @classmethod
    def from_spec(cls, target: Any, options: dict[str, Any], *, corpus: Any = None) -> Any:
        """An LLM teacher over this backend: ``teacher=pointwise`` (default) or ``listwise``; the
        options this constructor takes go to the backend, the rest to the teacher."""
        if not target or "model" not in options:
            raise TeacherError(f"openai needs a base URL and ?model=NAME: {cls.example!r}")
        style = options.pop("teacher", "pointwise")
        if style == "pointwise":
            from distilir.teachers.llm_pointwise import LLMPointwiseTeacher as teacher_cls
        elif style == "listwise":
            from distilir.teachers.llm_listwise import LLMListwiseTeacher as teacher_cls
        else:
            raise TeacherError(f"openai option teacher must be 'pointwise' or 'listwise', got {style!r}")
        backend_keys = set(inspect.signature(cls.__init__).parameters) - {"self", "base_url"}
        backend = cls(target, **{k: options.pop(k) for k in list(options) if k in backend_keys})
        return teacher_cls.from_spec(backend, options, corpus=corpus)

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        batch_size: int = 8,
        top_logprobs: int = 5,
        tokenizer: Any = None,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise OpenAIBackendError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000, got {base_url!r}"
            )
        if not isinstance(model, str) or not model:
            raise OpenAIBackendError(f"model must be the non-empty name the server serves, got {model!r}")
        if not timeout or timeout <= 0:
            raise OpenAIBackendError(f"timeout must be a positive number of seconds, got {timeout!r}")
        for arg, value, low in (
            ("max_retries", max_retries, 0),
            ("batch_size", batch_size, 1),
            ("top_logprobs", top_logprobs, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise OpenAIBackendError(f"{arg} must be an int >= {low}, got {value!r}")
        root = base_url.rstrip("/")
        self.base_url = root.removesuffix("/v1")
        self.url = self.base_url + "/v1/completions"
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.top_logprobs = top_logprobs
        self.backoff = backoff
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), headers=headers)
        self.requests_sent = 0

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai-completions", "base_url": self.base_url, "model": self.model}

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx

        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests_sent += 1
            try:
                r = self._client.post(self.url, json={"model": self.model, **payload})
            except httpx.TimeoutException as exc:
                last = f"no answer within timeout={self.timeout} s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"could not connect ({type(exc).__name__}: {exc})"
                continue
            if r.status_code in _RETRY_STATUS:
                last = f"HTTP {r.status_code}: {_server_message(r)}"
                continue
            if r.status_code >= 400:
                raise OpenAIBackendError(
                    f"POST {self.url} was refused with HTTP {r.status_code}: {_server_message(r)}. "
                    f"The server must serve model {self.model!r} on the legacy completions endpoint with "
                    "logprobs (and echo=True for query likelihood); check the model name and the server's "
                    "options."
                )
            try:
                return r.json()
            except ValueError as exc:
                raise OpenAIBackendError(
                    f"POST {self.url} answered with non-JSON content: {r.text[:200]!r}"
                ) from exc
        raise OpenAIBackendError(
            f"POST {self.url} failed after {self.max_retries + 1} attempt(s); last error: {last}. Check "
            f"that an OpenAI-compatible server is running at {self.base_url} and serves {self.model!r}; "
            "for a slow model raise timeout, for an overloaded one raise max_retries or lower batch_size."
        )

    def _complete(self, prompts: Sequence[str], **params: Any) -> list[dict[str, Any]]:
        """``choices[i]["logprobs"]`` for each prompt, in prompt order (batched requests)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[i : i + self.batch_size])
            data = self._post({"prompt": chunk, "temperature": 0.0, **params})
            choices = data.get("choices") if isinstance(data, dict) else None
            if not isinstance(choices, list) or len(choices) != len(chunk):
                raise OpenAIBackendError(
                    f"{self.url} returned {len(choices) if isinstance(choices, list) else 'no'} choices for "
                    f"{len(chunk)} prompts; expected one choice per prompt (n=1)"
                )
            choices = sorted(choices, key=lambda c: c.get("index", 0))
            for c in choices:
                lp = c.get("logprobs")
                if not isinstance(lp, dict) or "token_logprobs" not in lp:
                    raise OpenAIBackendError(
                        f"{self.url} returned no logprobs; the server must support the `logprobs` parameter "
                        "of the legacy completions API"
                    )
                out.append(lp)
        return out

    # ------------------------------------------------------------------ tokens
    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return int(np.ceil(len(text.split()) / 0.75))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        if self.tokenizer is not None:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]
        words = text.split()
        keep = max(1, int(max_tokens * 0.75))
        return text if len(words) <= keep else " ".join(words[:keep])

    def check_single_tokens(self, texts: Sequence[str]) -> None:
        """With a tokenizer, raise unless every text is one token; without one the server's tokens
        are unknown here and the texts are accepted."""
        if self.tokenizer is None:
            return
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise OpenAIBackendError(
                    f"{text!r} is {len(ids)} tokens for this tokenizer; answer and label strings must be "
                    "exactly one token: change the prompt's yes/no strings or labels"
                )

    # ------------------------------------------------------------------ scoring
    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[np.ndarray]:
        if len(prompts) != len(continuations):
            raise TeacherError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
        texts = [p + c for p, c in zip(prompts, continuations, strict=True)]
        lps = self._complete(texts, echo=True, max_tokens=1, logprobs=0)
        out = []
        for p, text, lp in zip(prompts, texts, lps, strict=True):
            out.append(_span_logprobs(lp, len(p), len(text), self.url))
        return out

    def next_token_scores(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        if len(prompts) != len(candidates):
            raise TeacherError(f"got {len(prompts)} prompts but {len(candidates)} candidate lists")
        scores = [np.full(len(c), np.nan) for c in candidates]
        if self.top_logprobs > 0:
            lps = self._complete(prompts, echo=False, max_tokens=1, logprobs=self.top_logprobs)
            for i, lp in enumerate(lps):
                top = (lp.get("top_logprobs") or [None])[0] or {}
                for k, cand in enumerate(candidates[i]):
                    if cand in top and top[cand] is not None:
                        scores[i][k] = float(top[cand])
        # Candidates outside the top list: score them exactly, log P(candidate | prompt) by echo.
        missing = [(i, k) for i, s in enumerate(scores) for k in range(len(s)) if np.isnan(s[k])]
        if missing:
            extra = self.continuation_logprobs(
                [prompts[i] for i, _ in missing], [candidates[i][k] for i, k in missing]
            )
            for (i, k), lp in zip(missing, extra, strict=True):
                scores[i][k] = float(np.sum(lp))
        return scores


def _span_logprobs(lp: dict[str, Any], start: int, end: int, url: str) -> np.ndarray:
    """Log-probs of the echoed tokens that cover text[start:end] (by ``text_offset``)."""
    offsets = lp.get("text_offset")
    values = lp.get("token_logprobs")
    if not isinstance(offsets, list) or not isinstance(values, list) or len(offsets) != len(values):
        raise OpenAIBackendError(
            f"{url} returned logprobs without matching `text_offset` and `token_logprobs`; echo=True with "
            "logprobs is needed for query likelihood"
        )
    picked = []
    for off, val in zip(offsets, values, strict=True):
        if start <= off < end:
            if val is None:
                raise OpenAIBackendError(
                    f"{url} gave no log-probability for a continuation token at offset {off}; the prompt "
                    "before the continuation must not be empty"
                )
            picked.append(float(val))
    if not picked:
        raise OpenAIBackendError(
            f"{url} echoed no tokens for the continuation (characters {start}..{end}); does the server "
            "support echo=True?"
        )
    return np.asarray(picked, dtype=np.float64)


def _server_message(r: Any) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text[:300] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(data)[:300]
