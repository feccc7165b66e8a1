"""Listwise LLM teacher in the style of FIRST, with sliding windows and comparable scores.

FIRST (Reddy et al., "FIRST: Faster Improved Listwise Reranking with Single Token Decoding", EMNLP
2024, arXiv:2406.15657): the candidates of a window are shown in one prompt, each behind an identifier
(``[A]``, ``[B]``, ...), and the model is asked for a ranking. Instead of generating the whole
permutation, one forward pass is made and the relevance of each candidate is read from the logit of
its identifier token at the *first* generated position. Score type ``"listwise_logit"``.

Sliding windows (RankGPT, Sun et al. 2023, arXiv:2304.09542). For ``n > window`` candidates the
windows start at ``n - window, n - window - stride, ...`` down to ``0`` (see :func:`window_starts`):
the first window holds the *bottom* of the list, each next one moves up by ``stride``, and after each
window its candidates are reordered by their scores, so relevant documents can climb from the bottom to
the top in one sweep. Requires ``0 < stride < window``, so consecutive windows share
``window - stride`` positions (the first window may share more).

How scores of different windows are made comparable (the design, written out):

1. Every window is scored in one forward pass; ``l_d`` is the logit of document ``d``'s identifier.
2. The documents that a window shares with the windows before it ("carried" documents: those already
   scored) anchor it: the window gets the offset
   ``o_w = mean_{d in carried}(s_d) - mean_{d in carried}(l_d)``, and every document of the window gets
   ``s_d = l_d + o_w``; the first (bottom) window has ``o_w = 0``. A document's final score is the one
   from the *last* window that contained it; carried documents thus keep their mean score, and the
   newcomers are placed on the same scale relative to them.
3. At the end all scores are shifted by ``-o_top`` so that the top window's scores are exactly its raw
   identifier logits.
4. The final ranking is by score (ties keep the first-stage order). Scores are real logit-scale numbers,
   not ``1/rank``; within one window, score differences are logit differences. Documents finalised in
   a lower window keep their score even if a carried document ends below them -- the scores, not the
   order in which windows were visited, are the teacher's output.

Over an OpenAI-compatible server the identifier scores are log-probabilities, which differ from the
logits by one constant per window; step 2 absorbs that constant, so the final scores differ from the
local model's by a single constant per query (exactly the top window's ``log Σ exp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distilir.teachers.base import BaseTeacher, TeacherError
from distilir.teachers.llm_common import PromptTemplate, as_backend, load_prompt, render

__all__ = ["ListwiseTrace", "LLMListwiseTeacher", "window_starts"]


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Start positions of the sliding windows over ``n`` candidates, in processing order (bottom up).

    ``window_starts(7, 3, 2) == [4, 2, 0]``: windows ``[4, 7)``, ``[2, 5)``, ``[0, 3)``. The last
    window always starts at 0; every position lies in at least one window.
    """
    if window < 1 or not 0 < stride < window:
        raise TeacherError(f"need window >= 2 and 0 < stride < window, got window={window}, stride={stride}")
    if n <= window:
        return [0]
    starts = list(range(n - window, 0, -stride))
    if starts[-1] != 0:
        starts.append(0)
    return starts


@dataclass
class ListwiseTrace:
    """What one query's sliding-window pass did (for inspection and tests).

    ``windows[i]`` = (start, doc indices in prompt order, raw identifier scores, offset o_w)."""

    scores: list[float]
    windows: list[tuple[int, list[int], list[float], float]] = field(default_factory=list)
    final_order: list[int] = field(default_factory=list)


class LLMListwiseTeacher(BaseTeacher):
    """FIRST-style single-token listwise reranker with sliding windows.

    Args:
        model: alias, ``.gguf`` file, folder or hub id, a ``LoadedCausalLM``, or a backend such as
            ``OpenAIBackend`` (see :class:`~distilir.teachers.llm_pointwise.LLMPointwiseTeacher`).
        window: candidates per prompt (at most the number of identifiers of the prompt's label set:
            26 letters).
        stride: how far each next window moves up; ``0 < stride < window``.
        prompt: None (packaged ``listwise``), a packaged name, a YAML file or a mapping.
        max_passage_tokens: each candidate is cut to this many tokens.
        max_query_tokens: the query is cut to this many tokens.
        batch_size: windows per forward pass (windows of different queries at the same sweep step are
            batched together; local models only).
        dtype: weights dtype when ``model`` is loaded here.
        progress: show a progress bar (None: only for long jobs).
    """

    kind = "llm-listwise"
    help = "a causal LM (alias, .gguf, folder, hub id)"
    example = "llm-listwise:smollm2-135m-instruct?window=20&stride=10"
    name = "llm-listwise"
    score_type = "listwise_logit"
    citation = (
        "@inproceedings{reddy2024first, title={FIRST: Faster Improved Listwise Reranking with Single "
        "Token Decoding}, author={Reddy, Revanth Gangi and Doo, JaeHyeok and Xu, Yifei and Sultan, Md "
        "Arafat and Swain, Deevya and Sil, Avirup and Ji, Heng}, booktitle={EMNLP}, year={2024}}"
    )

    def __init__(
        self,
        model: Any,
        window: int = 20,
        stride: int = 10,
        prompt: str | Mapping[str, Any] | PromptTemplate | None = None,
        max_passage_tokens: int = 100,
        max_query_tokens: int = 64,
        batch_size: int = 2,
        dtype: str = "float32",
        progress: bool | None = None,
    ) -> None:
        for arg, value, low in (
            ("window", window, 2),
            ("stride", stride, 1),
            ("max_passage_tokens", max_passage_tokens, 1),
            ("max_query_tokens", max_query_tokens, 1),
            ("batch_size", batch_size, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TeacherError(f"{arg} must be an int >= {low}, got {value!r}")
        window_starts(window + 1, window, stride)  # validates 0 < stride < window
        self.template = load_prompt(prompt, "listwise")
        self.labels = self.template.label_list()
        if window > len(self.labels):
            raise TeacherError(
                f"window={window} needs {window} identifiers but the prompt's label set "
                f"{self.template.labels!r} has {len(self.labels)}; lower the window or use labels: letters"
            )
        self.window, self.stride = window, stride
        self.max_passage_tokens, self.max_query_tokens = max_passage_tokens, max_query_tokens
        self.batch_size = batch_size
        self.dtype = dtype
        self.backend = as_backend(model, dtype=dtype, batch_size=batch_size, progress=progress)
        self.backend.check_single_tokens(self.labels[:window])

    # ------------------------------------------------------------------ prompts
    def build_prompt(self, query: str, passages: Sequence[str]) -> str:
        """The window prompt: every passage (already truncated) behind its identifier, in order."""
        f = self.template.fields
        items = "".join(render(f["item"], label=self.labels[i], passage=p) for i, p in enumerate(passages))
        return render(f["prompt"], query=query, passages=items, num=str(len(passages)))

    # ------------------------------------------------------------------ scoring
    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        return [t.scores for t in self.trace_many(queries, docs)]

    def trace(self, query: str, docs: Sequence[str]) -> ListwiseTrace:
        return self.trace_many([query], [docs])[0]

    def trace_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[ListwiseTrace]:
        """Run the sliding-window sweep for every query; windows of the same step are batched."""
        if isinstance(queries, str) or len(queries) != len(docs):
            raise TeacherError(
                f"expected a list of queries and one document list per query, got {type(queries).__name__} "
                f"and {len(docs)} document lists"
            )
        b = self.backend
        states = []
        for qi, (q, ds) in enumerate(zip(queries, docs, strict=True)):
            if not isinstance(q, str) or not q.strip():
                raise TeacherError(f"query {qi} is empty or not a string: {q!r}")
            if isinstance(ds, str):
                raise TeacherError(f"documents of query {qi} must be a list of strings, got one string")
            states.append(
                {
                    "query": b.truncate(q, self.max_query_tokens),
                    "docs": [b.truncate(str(d), self.max_passage_tokens) for d in ds],
                    "order": list(range(len(ds))),
                    "starts": window_starts(len(ds), self.window, self.stride) if ds else [],
                    "score": {},
                    "trace": ListwiseTrace(scores=[]),
                }
            )
        steps = max((len(s["starts"]) for s in states), default=0)
        for step in range(steps):
            active = [s for s in states if step < len(s["starts"])]
            prompts, cands, members = [], [], []
            for s in active:
                start = s["starts"][step]
                ids = s["order"][start : start + self.window]
                members.append(ids)
                prompts.append(self.build_prompt(s["query"], [s["docs"][i] for i in ids]))
                cands.append(self.labels[: len(ids)])
            raw = b.next_token_scores(prompts, cands)
            for s, ids, logits in zip(active, members, raw, strict=True):
                self._apply_window(s, s["starts"][step], ids, np.asarray(logits, dtype=np.float64))
        out = []
        for s in states:
            t: ListwiseTrace = s["trace"]
            if s["docs"]:
                top_offset = t.windows[-1][3]
                t.scores = [float(s["score"][i] - top_offset) for i in range(len(s["docs"]))]
                t.final_order = sorted(range(len(t.scores)), key=lambda i: (-t.scores[i], i))
            out.append(t)
        return out

    def _apply_window(self, state: dict, start: int, ids: list[int], logits: np.ndarray) -> None:
        score: dict[int, float] = state["score"]
        carried = [k for k, i in enumerate(ids) if i in score]
        offset = 0.0
        if carried:
            offset = float(np.mean([score[ids[k]] for k in carried]) - np.mean(logits[carried]))
        for k, i in enumerate(ids):
            score[i] = float(logits[k] + offset)
        # Reorder the window's positions by the new scores (stable: ties keep the current order).
        state["order"][start : start + len(ids)] = sorted(ids, key=lambda i: -score[i])
        state["trace"].windows.append((start, list(ids), [float(x) for x in logits], offset))

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "kind": "llm-listwise",
            "score_type": self.score_type,
            "model": self.backend.describe(),
            "prompt": self.template.to_dict(),
            "window": self.window,
            "stride": self.stride,
            "max_passage_tokens": self.max_passage_tokens,
            "max_query_tokens": self.max_query_tokens,
            "combination": "carried-mean-offset/v1",
        }
