"""Cross-encoder teacher: any sentence-transformers ``CrossEncoder`` checkpoint, scored fast in batches.

A cross-encoder reads query and passage together and outputs one relevance logit per pair. It is
the classic distillation teacher (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models
with Cross-Architecture Knowledge Distillation", arXiv:2010.02666). Scores are the model's **raw
logits** (``score_type="logit"``: log-odds, not probabilities) unless ``activation="sigmoid"``.

Why not just ``CrossEncoder.predict``: a teacher scores whole candidate lists of many queries, so
this class does the work once for the whole set of pairs given to :meth:`score_many`:

1. identical ``(query, doc)`` pairs are scored once (candidate lists merged from several retrievers,
   repeated queries and re-runs repeat pairs);
2. all unique pairs are tokenised in one call of the fast (Rust) tokenizer, without padding;
3. pairs are sorted by their exact token count, so each batch is padded only to its own longest
   pair (``predict`` sorts by character count, a proxy);
4. batches run under ``torch.inference_mode()`` with the model in eval mode and torch's intra-op
   threads set to the cores this process may use that other processes do not keep busy
   (:func:`sensible_threads`), restored afterwards;
5. scores are scattered back to the original order, duplicates included;
6. optionally (``backend="onnx"``) the forward passes run in ONNX Runtime on CPU: the model is
   exported once per weights fingerprint by :func:`distilir_index.onnx.export_onnx` (the project's one
   ONNX path; its docstring says why not sentence-transformers' ``backend="onnx"``) and ONNX Runtime
   scores the same batches. Measured here (MiniLM-L6 cross-encoder, 1 thread): ~3x the torch forward,
   scores equal within 1e-6 (benchmarks/reports/teacher_throughput.md for end to end). It is
   a runtime choice, so it is not part of the fingerprint: a store scored with one backend is
   resumed with the other.

Models whose input module is not a plain text sequence-classification ``Transformer`` (chat-template
rerankers, prompts) fall back to ``CrossEncoder.predict`` on the de-duplicated pairs, so every
checkpoint works and the fast path only changes how pairs are fed, never the numbers (it matches
``predict`` within float rounding; see ``tests/distilir/teachers/test_teacher_cross_encoder.py``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from distilir_index.onnx import available_cores, export_onnx, ort_session, sensible_threads

from distilir.teachers.base import (
    BaseTeacher,
    TeacherError,
    check_lists,
    load_teacher_model,
    state_dict_fingerprint,
)

__all__ = ["CrossEncoderTeacher", "available_cores", "sensible_threads", "torch_threads"]

_ACTIVATIONS = (None, "identity", "sigmoid")
_BACKENDS = ("auto", "torch", "onnx")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: :func:`sensible_threads`), then restore."""
    import torch

    before = torch.get_num_threads()
    target = n or sensible_threads()
    if target != before:
        torch.set_num_threads(target)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class CrossEncoderTeacher(BaseTeacher):
    """Scores (query, passage) pairs with a sentence-transformers ``CrossEncoder``.

    Args:
        model: a hub id, a local folder, a packaged name resolved by
            ``distilir_index.models.resolve_model``, or an already built ``CrossEncoder``.
        max_length: pairs are truncated (longest sequence first) to this many tokens; the model's own
            limit applies when smaller.
        batch_size: pairs per forward pass.
        activation: ``None`` (raw logits, ``score_type="logit"``) or ``"sigmoid"`` (``"probability"``).
            Distillation losses such as Margin-MSE expect logits.
        device: torch device; ``None`` lets sentence-transformers pick (CUDA if available).
        num_threads: torch intra-op threads while scoring; ``None``: :func:`sensible_threads` (the
            free cores available to this process). Runtime only: not part of the fingerprint.
        max_batch_tokens: optional cap on padded tokens per forward pass (batch size x longest pair),
            so that batches of short pairs stay large while batches of long pairs shrink (useful on
            accelerators with little memory); ``None``: ``batch_size`` pairs per pass. Runtime only.
        show_progress: show a tqdm bar over batches.
        backend: ``"auto"`` (default: ONNX Runtime when the model is on the CPU, onnxruntime and onnx
            are installed and the model is a plain text sequence-classification cross-encoder; torch
            otherwise), ``"torch"`` or ``"onnx"`` (see the module docstring). Runtime only.

    Models with ``num_labels == 2`` are scored as ``logit[1] - logit[0]`` (the log-odds of the
    positive class under a softmax); more labels are rejected.

    Example::

        teacher = CrossEncoderTeacher("cross-encoder/ms-marco-MiniLM-L6-v2")
        teacher.score("what is bm25", ["BM25 is a ranking function ...", "Paris is ..."])
    """

    kind = "cross-encoder"
    help = "a CrossEncoder hub id or folder"
    example = "cross-encoder:cross-encoder/ms-marco-MiniLM-L6-v2"
    score_type = "logit"

    def __init__(
        self,
        model: Any,
        max_length: int = 512,
        batch_size: int = 32,
        activation: str | None = None,
        device: str | None = None,
        *,
        num_threads: int | None = None,
        max_batch_tokens: int | None = None,
        show_progress: bool = False,
        backend: str = "auto",
    ) -> None:
        if backend not in _BACKENDS:
            raise TeacherError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if not isinstance(max_length, int) or max_length < 8:
            raise TeacherError(
                f"max_length must be an int >= 8, got {max_length!r}; 512 suits BERT-style models"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TeacherError(f"batch_size must be a positive int, got {batch_size!r}; try 32")
        if activation not in _ACTIVATIONS:
            raise TeacherError(
                f"activation must be one of {_ACTIVATIONS}, got {activation!r}; use None for raw logits"
            )
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise TeacherError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.batch_size = batch_size
        self.num_threads = num_threads
        if max_batch_tokens is not None and (not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
            raise TeacherError(f"max_batch_tokens must be a positive int or None, got {max_batch_tokens!r}")
        self.max_batch_tokens = max_batch_tokens
        self.show_progress = show_progress
        self.activation = None if activation == "identity" else activation
        if self.activation == "sigmoid":
            self.score_type = "probability"
        self._model, self._identity = _load_cross_encoder(model, max_length=max_length, device=device)
        self.max_length = min(max_length, int(self._model.max_seq_length or max_length))
        num_labels = int(self._model.num_labels)
        if num_labels not in (1, 2):
            raise TeacherError(
                f"{self._identity['name']} has {num_labels} labels; a relevance teacher needs 1 (a logit) or "
                "2 (not relevant / relevant). Pick a reranking checkpoint."
            )
        self.num_labels = num_labels
        self.name = f"cross-encoder:{self._identity['name'] or 'in-memory'}"
        self._fast = _can_feed_directly(self._model)
        if backend == "auto":
            from distilir_index.onnx import onnx_available

            on_cpu = str(self._model.device) == "cpu"
            backend = "onnx" if self._fast and on_cpu and onnx_available() else "torch"
        self.backend = backend
        self._onnx: Any = None
        if backend == "onnx":
            if not self._fast:
                raise TeacherError(
                    f"backend='onnx' needs a plain text sequence-classification cross-encoder; "
                    f"{self.name} uses prompts or a chat template: use backend='torch'"
                )
            if str(self._model.device) != "cpu":
                raise TeacherError(
                    f"backend='onnx' runs on CPU but the model is on {self._model.device}; "
                    "use backend='torch' on accelerators"
                )

    # -- the protocol -----------------------------------------------------------------------------
    def score_many(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        check_lists(queries, docs)
        pairs = [(q, d) for q, ds in zip(queries, docs, strict=True) for d in ds]
        flat = self.score_pairs(pairs).tolist()
        out, start = [], 0
        for ds in docs:
            out.append(flat[start : start + len(ds)])
            start += len(ds)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "kind": "cross-encoder",
            "model": self._identity,
            "max_length": self.max_length,
            "activation": self.activation,
            "num_labels": self.num_labels,
            "dtype": str(next(self._model.parameters()).dtype).removeprefix("torch."),
            "score_type": self.score_type,
        }

    # -- scoring ----------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The underlying ``sentence_transformers.CrossEncoder``."""
        return self._model

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores of ``pairs`` in their order (float64), each distinct pair computed once."""
        if not pairs:
            return np.zeros(0, dtype=np.float64)
        position: dict[tuple[str, str], int] = {}
        inverse = np.empty(len(pairs), dtype=np.int64)
        unique: list[tuple[str, str]] = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TeacherError(f"pair {i} is {pair!r}; expected a (query: str, doc: str) tuple")
            q, d = pair
            if not (isinstance(q, str) and isinstance(d, str)):
                raise TeacherError(f"pair {i} holds {type(q).__name__}, {type(d).__name__}; expected two str")
            key = (q, d)
            j = position.get(key)
            if j is None:
                j = position[key] = len(unique)
                unique.append(key)
            inverse[i] = j
        with torch_threads(self.num_threads):
            scores = self._forward_fast(unique) if self._fast else self._forward_predict(unique)
        return scores[inverse]

    def _postprocess(self, logits: Any) -> Any:
        import torch

        logits = logits.float()
        if logits.ndim > 1 and logits.shape[-1] == 2:
            logits = logits[..., 1] - logits[..., 0]
        elif logits.ndim > 1:
            logits = logits.squeeze(-1)
        if self.activation == "sigmoid":
            logits = torch.sigmoid(logits)
        return logits

    def _forward_fast(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch
        from sentence_transformers.util import batch_to_device
        from tqdm.auto import tqdm

        model = self._model
        tokenizer = model.tokenizer
        enc = tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation="longest_first",
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
        )
        columns = [k for k in enc.keys() if k in ("input_ids", "token_type_ids")]
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(pairs))
        order = np.argsort(-lengths, kind="stable")  # longest first: memory problems show at once
        out = np.empty(len(pairs), dtype=np.float64)
        model.eval()
        device = model.device
        batches = _token_budget_batches(lengths[order], self.batch_size, self.max_batch_tokens)
        session = self._onnx_session(columns) if self.backend == "onnx" else None
        with torch.inference_mode():
            for start, stop in tqdm(
                batches, desc="cross-encoder", unit="batch", disable=not self.show_progress
            ):
                idx = order[start:stop]
                if session is not None:
                    features = tokenizer.pad(
                        {c: [enc[c][i] for i in idx] for c in columns}, padding=True, return_tensors="np"
                    )
                    feed = {k: np.asarray(v, dtype=np.int64) for k, v in features.items()}
                    logits = torch.from_numpy(session.run(None, feed)[0])
                else:
                    features = tokenizer.pad(
                        {c: [enc[c][i] for i in idx] for c in columns}, padding=True, return_tensors="pt"
                    )
                    features = batch_to_device(dict(features), device)
                    features["modality"] = "text"
                    logits = model(features)["scores"]
                out[idx] = self._postprocess(logits).cpu().numpy()
        return out

    def _onnx_session(self, columns: list[str]) -> Any:
        """An ONNX Runtime session for the model, exporting it on first use (see the module docstring)."""
        if self._onnx is None:
            try:
                import onnxruntime  # noqa: F401
            except ImportError as exc:
                raise TeacherError(
                    "backend='onnx' needs onnxruntime and onnx: pip install onnxruntime onnx"
                ) from exc
            path = export_onnx(
                self._model.model, self._identity.get("fingerprint"), [*columns, "attention_mask"], "logits"
            )
            self._onnx = ort_session(path, self.num_threads or sensible_threads())
        return self._onnx

    def _forward_predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        import torch

        logits = self._model.predict(
            pairs,
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            convert_to_tensor=True,
            show_progress_bar=self.show_progress,
        )
        return self._postprocess(logits).cpu().numpy().astype(np.float64)


def _token_budget_batches(
    sorted_lengths: np.ndarray, batch_size: int, max_tokens: int | None
) -> list[tuple[int, int]]:
    """Cut lengths sorted longest-first into ``[start, stop)`` batches of at most ``batch_size`` pairs
    and at most ``max_tokens`` padded tokens (batch size x its longest pair); a single pair longer
    than the budget still gets a batch of its own."""
    batches, start, n = [], 0, len(sorted_lengths)
    while start < n:
        size = batch_size
        if max_tokens:
            size = max(1, min(batch_size, max_tokens // max(1, int(sorted_lengths[start]))))
        batches.append((start, min(n, start + size)))
        start += size
    return batches


def _can_feed_directly(model: Any) -> bool:
    """True when the model is one text ``Transformer`` for sequence classification, no prompt and no
    chat template: then tokenizer output can be fed to it directly, exactly as ``predict`` does."""
    from sentence_transformers.base.modules import Transformer

    first = model[0]
    if (
        not isinstance(first, Transformer)
        or getattr(first, "transformer_task", None) != "sequence-classification"
    ):
        return False
    if "message" in getattr(first, "modality_config", {}) or getattr(model, "default_prompt_name", None):
        return False
    return getattr(model, "tokenizer", None) is not None and getattr(model.tokenizer, "is_fast", False)


def _load_cross_encoder(model: Any, *, max_length: int, device: str | None) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers import CrossEncoder

    if isinstance(model, CrossEncoder):
        ce, identity = load_teacher_model(model, CrossEncoder, device=device)
        identity["name"] = model.model_card_data.base_model
        return ce, identity
    ce, identity = load_teacher_model(
        model,
        CrossEncoder,
        device=device,
        max_length=max_length,
        example="CrossEncoderTeacher('cross-encoder/ms-marco-MiniLM-L6-v2')",
    )
    if identity["path"] is not None and _head_is_new(Path(identity["path"]), ce):
        # The folder holds no classification head (e.g. a bi-encoder checkpoint): the head was just
        # initialised at random, so the file hash alone would not identify these scores.
        identity["fingerprint"] = state_dict_fingerprint(ce)
        identity["head"] = "randomly initialised: the folder has no sequence-classification weights"
    return ce, identity


def _head_is_new(folder: Path, ce: Any) -> bool:
    try:
        archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return False
    return type(ce.model).__name__ not in archs
