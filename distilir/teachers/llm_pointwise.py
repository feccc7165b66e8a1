"""Pointwise LLM teacher: each (query, passage) pair is scored on its own by a causal LM.

Two modes:

``query_likelihood`` (default; score type ``"log_likelihood"``)
    UPR (Sachan et al., "Improving Passage Retrieval with Zero-Shot Question Generation", EMNLP 2022,
    arXiv:2204.07496): the passage is put in a prompt that asks for a question, and the score is the
    mean log-probability of the query's tokens as the continuation,

    .. math::

        s(q, p) = \\frac{1}{|q|} \\sum_{t=1}^{|q|} \\log P(q_t \\mid \\mathrm{prompt}(p), q_{<t}) \\le 0.

    For small models this ranks far better than asking for a relevance judgement.

``yes_no`` (score type ``"logit"``)
    The model is asked whether the passage answers the query; the score is the difference of the
    next-token logits of the two answers, ``logit(" yes") - logit(" no")`` -- the log-odds of "yes"
    against "no" (monoT5's readout, Nogueira et al. 2020, arXiv:2003.06713). Over an OpenAI-compatible
    server the same number comes from log-probabilities, whose difference equals the logit difference.

Passages are truncated (at a token boundary) so that prompt, passage and query fit in ``max_length``
tokens; queries are cut to ``max_query_tokens``. Scores come from
:class:`~distilir.teachers.llm_common.LocalCausalLM` (batched over all pairs of all queries, sorted by
length) or from :class:`~distilir.teachers.openai_backend.OpenAIBackend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from distilir.teachers.base import BaseTeacher, TeacherError
from distilir.teachers.llm_common import PromptTemplate, as_backend, load_prompt, render

__all__ = ["LLMPointwiseTeacher"]

_MODES = {"query_likelihood": "log_likelihood", "yes_no": "logit"}


class LLMPointwiseTeacher(BaseTeacher):
    """Scores (query, passage) pairs by query likelihood or a yes/no logit.

    Args:
        model: an alias (``"smollm2-135m-instruct"``), a ``.gguf`` file, a model folder or hub id
            (loaded with :func:`~distilir.teachers.llm_common.load_causal_lm`), an already loaded
            ``LoadedCausalLM``, or a backend such as ``OpenAIBackend``.
        mode: ``"query_likelihood"`` or ``"yes_no"``.
        prompt: None (the packaged default of the mode), a packaged prompt name, a YAML file, a
            mapping or an inline template (see :func:`~distilir.teachers.llm_common.load_prompt`).
        max_length: at most this many tokens per scored sequence (prompt + passage + query); the
            passage is cut to fit.
        max_query_tokens: queries are cut to this many tokens.
        batch_size: pairs per forward pass (local models only; does not change the scores).
        dtype: weights dtype when ``model`` is loaded here.
        progress: show a progress bar (None: only for long jobs).

    Example:
        >>> teacher = LLMPointwiseTeacher("smollm2-135m-instruct", mode="query_likelihood")
        >>> teacher.score("what causes tides", ["The Moon's gravity pulls ...", "Bread recipe ..."])
    """

    kind = "llm-pointwise"
    help = "a causal LM (alias, .gguf, folder, hub id)"
    example = "llm-pointwise:smollm2-135m-instruct?mode=query_likelihood"
    name = "llm-pointwise"
    citation = (
        "@inproceedings{sachan2022upr, title={Improving Passage Retrieval with Zero-Shot Question "
        "Generation}, author={Sachan, Devendra Singh and Lewis, Mike and Joshi, Mandar and Aghajanyan, "
        "Armen and Yih, Wen-tau and Pineau, Joelle and Zettlemoyer, Luke}, booktitle={EMNLP}, year={2022}}"
    )

    def __init__(
        self,
        model: Any,
        mode: str = "query_likelihood",
        prompt: str | Mapping[str, Any] | PromptTemplate | None = None,
        max_length: int = 512,
        max_query_tokens: int = 64,
        batch_size: int = 8,
        dtype: str = "float32",
        progress: bool | None = None,
    ) -> None:
        if mode not in _MODES:
            raise TeacherError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        for arg, value, low in (
            ("max_length", max_length, 16),
            ("max_query_tokens", max_query_tokens, 1),
            ("batch_size", batch_size, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TeacherError(f"{arg} must be an int >= {low}, got {value!r}")
        self.mode = mode
        self.score_type = _MODES[mode]
        self.template = load_prompt(prompt, mode)
        self.max_length = max_length
        self.max_query_tokens = max_query_tokens
        self.batch_size = batch_size
        self.backend = as_backend(model, dtype=dtype, batch_size=batch_size, progress=progress)
        self.dtype = dtype
        if mode == "yes_no":
            self._answers = (self.template.fields["yes"], self.template.fields["no"])
            # Fail at construction, not at the first score, if an answer is not a single token.
            self.backend.check_single_tokens(self._answers)

    # ------------------------------------------------------------------ prompts
    def _fit(self, query: str, passage: str) -> tuple[str, str]:
        """(prompt, continuation) texts for one pair, the passage cut so that the whole fits."""
        b = self.backend
        query = b.truncate(query, self.max_query_tokens)
        f = self.template.fields
        if self.mode == "query_likelihood":
            head, tail = f["prompt"], render(f["continuation"], query=query)
            overhead = b.count_tokens(render(head, passage="")) + b.count_tokens(tail)
        else:
            head, tail = render(f["prompt"], query=query), ""
            overhead = b.count_tokens(render(head, passage="")) + 1
        budget = self.max_length - overhead
        if budget < 1:
            raise TeacherError(
                f"max_length={self.max_length} leaves no room for the passage: prompt and query take "
                f"{overhead} tokens; raise max_length or lower max_query_tokens"
            )
        return render(head, passage=b.truncate(passage, budget)), tail

    # ------------------------------------------------------------------ scoring
    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        """Scores of every query's documents; all pairs of all queries are batched together."""
        if isinstance(queries, str) or len(queries) != len(docs):
            raise TeacherError(
                f"expected a list of queries and one document list per query, got {type(queries).__name__} "
                f"and {len(docs)} document lists"
            )
        pairs: list[tuple[str, str]] = []
        for qi, (q, ds) in enumerate(zip(queries, docs, strict=True)):
            if not isinstance(q, str) or not q.strip():
                raise TeacherError(f"query {qi} is empty or not a string: {q!r}")
            if isinstance(ds, str):
                raise TeacherError(f"documents of query {qi} must be a list of strings, got one string")
            pairs.extend((q, d if isinstance(d, str) else str(d)) for d in ds)
        if not pairs:
            return [[] for _ in queries]
        texts = [self._fit(q, d) for q, d in pairs]
        if self.mode == "query_likelihood":
            logps = self.backend.continuation_logprobs([t[0] for t in texts], [t[1] for t in texts])
            flat = [float(np.mean(lp)) for lp in logps]
        else:
            cands = [list(self._answers)] * len(texts)
            scores = self.backend.next_token_scores([t[0] for t in texts], cands)
            flat = [float(s[0] - s[1]) for s in scores]
        out, i = [], 0
        for ds in docs:
            out.append(flat[i : i + len(ds)])
            i += len(ds)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        backend = self.backend.describe()
        return {
            "kind": "llm-pointwise",
            "mode": self.mode,
            "score_type": self.score_type,
            "model": backend,
            "prompt": self.template.to_dict(),
            "max_length": self.max_length,
            "max_query_tokens": self.max_query_tokens,
        }
