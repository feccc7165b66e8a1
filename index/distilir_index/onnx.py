"""The one fast CPU inference path of every transformer encoder the project runs: ONNX Runtime.

Index builds, :class:`~distilir_index.retriever.Retriever`, the service, first-stage retrieval, the
embedding and cross-encoder teachers and student evaluation all encode text through a
sentence-transformers model. On CPU its torch forward pass is the cost. Measured here (2 cores, torch
2.13, MiniLM-L6): 96 scifact abstracts take 8.5 s in torch and 6.6 s in ONNX Runtime (2 threads);
a short query takes 15 ms in torch and 7 ms in ONNX Runtime (one thread), 4 ms with int8 weights.

What this module does:

* :func:`export_onnx` exports a Hugging Face model's forward pass (its ``last_hidden_state`` for
  embedding models, ``logits`` for cross-encoders and SPLADE heads) once per weights fingerprint to
  ``$DISTILIR_CACHE/onnx`` (written to a temporary name, then renamed), from the *eager* attention
  graph, which ONNX Runtime fuses into its Attention kernel (the SDPA graph stays unfused: 3.9 s
  instead of 1.9 s in the measurement above); ``quantize="int8"`` adds onnxruntime's dynamic int8
  quantisation of the exported file (weights int8, activations quantised per batch).
* :class:`OnnxTransformer` runs the exported graph in place of the model's first module: the
  features still come from the model's own ``preprocess`` (tokenizer, prompts, truncation) and the
  model's other modules (pooling, dense, normalisation, SPLADE pooling) still run in torch after it,
  so only the transformer's arithmetic changes route, and the outputs match torch within 1e-5
  (``tests/index/test_onnx.py``).
* :func:`resolve_backend` turns ``"auto"`` into ``"onnx"`` on CPU when onnxruntime and onnx are
  installed and the model is a plain text transformer, else ``"torch"``. The backend is a runtime
  choice: recorded in manifests (``describe()["backend"]``), never part of a fingerprint.

Why not sentence-transformers' own ``backend="onnx"``: it loads through ``optimum-onnx``, whose only
release (0.1.0) requires ``transformers<4.58``; this project runs transformers 5, so installing it
would downgrade transformers under every other component. The exporter here uses ``torch.onnx``
directly and needs only ``onnx`` and ``onnxruntime``. Revisit when optimum-onnx supports
transformers 5.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BACKENDS",
    "QUANTIZATIONS",
    "OnnxTransformer",
    "available_cores",
    "encode_with_onnx",
    "export_onnx",
    "onnx_available",
    "onnx_unsupported_reason",
    "ort_session",
    "resolve_backend",
    "sensible_threads",
]

#: the inference backends every encoder accepts
BACKENDS = ("auto", "torch", "onnx")
#: query-encoder quantisations (None: float32)
QUANTIZATIONS = (None, "int8")


def available_cores() -> int:
    """Cores this process may run on (CPU affinity), which can be fewer than ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def sensible_threads() -> int:
    """Intra-op threads for an encoding job: the available cores minus those other processes keep
    busy, at least 1.

    Others' load is estimated as the 1-minute load average minus this process's own torch threads
    (assumed busy; if they were idle the estimate errs towards more threads). On a machine shared with
    other jobs, more intra-op threads than free cores make every thread wait for the slowest one at
    each synchronisation point: here (2 cores, load ~9), a MiniLM cross-encoder used 1.5-1.7 CPU-s
    with 2 threads for what 1 thread did in 1.0 CPU-s, and was not faster in wall time.
    """
    import torch

    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return cores
    others = max(0.0, load - min(torch.get_num_threads(), cores))
    return max(1, min(cores, round(cores - others)))


def onnx_available() -> bool:
    """True when both ``onnxruntime`` (to run) and ``onnx`` (``torch.onnx.export`` needs it) import."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def onnx_unsupported_reason(model: Any) -> str | None:
    """Why ``model`` (a sentence-transformers model) cannot take the ONNX path, or None when it can:
    its first module must be a text ``Transformer`` wrapping a Hugging Face ``PreTrainedModel``, with
    no chat template, no Router, and the model must be on the CPU."""
    from sentence_transformers.base.modules import Transformer

    modules = list(model)
    if not modules or not isinstance(modules[0], Transformer):
        return f"its first module is {type(modules[0]).__name__ if modules else 'missing'}, not a Transformer"
    first = modules[0]
    if "message" in getattr(first, "modality_config", {}):
        return "it renders inputs through a chat template"
    if getattr(first, "tokenizer", None) is None:
        return "it has no tokenizer"
    if not hasattr(first, "auto_model") or not hasattr(first.auto_model, "config"):
        return "its transformer is not a Hugging Face PreTrainedModel"
    if any(type(m).__name__ == "Router" for m in modules):
        return "it routes queries and documents through different modules"
    if str(getattr(model, "device", "cpu")) != "cpu":
        return f"it is on {model.device}, and the ONNX path runs on the CPU"
    return None


def resolve_backend(backend: str, model: Any = None, *, device: str | None = None) -> str:
    """``"torch"`` or ``"onnx"`` for a requested ``backend`` in :data:`BACKENDS`.

    ``"auto"`` is ``"onnx"`` when onnxruntime and onnx are installed, the device is the CPU and (when
    ``model`` is given) :func:`onnx_unsupported_reason` finds nothing; else ``"torch"``. An explicit
    ``"onnx"`` that cannot be honoured raises ``ValueError`` saying why and what to do."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cpu = device is None or str(device) == "cpu"
    reason = None
    if not onnx_available():
        reason = "onnxruntime and onnx are not installed (pip install onnxruntime onnx)"
    elif not on_cpu:
        reason = f"device {device!r} is not the CPU"
    elif model is not None:
        reason = onnx_unsupported_reason(model)
    if reason is None:
        return "onnx"
    if backend == "onnx":
        raise ValueError(f"backend='onnx' cannot be used: {reason}; use backend='torch' or 'auto'")
    return "torch"


def _weights_key(hf_model: Any) -> str:
    """sha256 over a model's parameters and buffers: the key of an in-memory model (no folder)."""
    h = hashlib.sha256()
    for name, tensor in sorted(hf_model.state_dict().items()):
        h.update(name.encode() + b"\x00" + str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "state:" + h.hexdigest()


def export_onnx(
    hf_model: Any,
    fingerprint: str | None,
    inputs: Sequence[str],
    output: str = "last_hidden_state",
    *,
    quantize: str | None = None,
) -> Path:
    """Export a Hugging Face model (``model.model`` of a ``CrossEncoder`` is unwrapped) to ONNX once
    per (weights ``fingerprint``, inputs, output, torch version, quantisation), returning its file.

    ``fingerprint`` None (a model held only in memory, e.g. a student being evaluated) keys the file by
    a hash of the weights instead. ``quantize="int8"``: dynamic int8 quantisation of the fp32 export
    (``onnxruntime.quantization.quantize_dynamic``). Files are written to a temporary name and renamed:
    a killed export leaves no half file."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}; got {quantize!r}")
    import torch

    from distilir_index.models import cache_dir

    hf = getattr(hf_model, "model", hf_model) if not hasattr(hf_model, "config") else hf_model
    key_of = fingerprint or _weights_key(hf)
    key = hashlib.sha256(
        json.dumps([key_of, sorted(inputs), torch.__version__, "eager", output], default=str).encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "onnx"
    stem = "cross-encoder" if output == "logits" else "encoder"
    path = folder / f"{stem}-{key}.onnx"
    if not path.is_file():
        _export(hf, list(inputs), output, path)
    if quantize is None:
        return path
    quantized = folder / f"{stem}-{key}.int8.onnx"
    if not quantized.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".int8.onnx.tmp")
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(path), tmp, weight_type=QuantType.QInt8)
            os.replace(tmp, quantized)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return quantized


def _export(hf: Any, inputs: list[str], output: str, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in inputs]

    class _Output(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return getattr(self.hf(**dict(zip(names, tensors, strict=True))), output)

    # a padded batch, so that no mask branch is traced as "no padding"
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 9:] = 0
    example = {"input_ids": torch.full((2, 16), 100) * mask, "attention_mask": mask}
    example["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    dummy = tuple(example[n] for n in names)
    was_training = hf.training
    hf.eval()
    attn_before = getattr(hf.config, "_attn_implementation", None)
    if attn_before not in (None, "eager") and hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Output(),
                dummy,
                tmp,
                input_names=names,
                output_names=[output],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        hf.train(was_training)
        if attn_before not in (None, "eager") and hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation(attn_before)
        if os.path.exists(tmp):
            os.unlink(tmp)


_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def ort_session(path: Path, threads: int) -> Any:
    """One ONNX Runtime session per (file, threads) per process (``run`` is thread-safe)."""
    import onnxruntime as ort

    key = (str(path), threads)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # ORT's default spinning between ops is kept: measured (MiniLM-L6, 96 scifact abstracts,
            # 2 threads) 6.6 s with it, 7.8 s without; one-thread sessions have no workers to spin
            _SESSIONS[key] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


class OnnxTransformer:
    """The exported transformer of a sentence-transformers model, run by ONNX Runtime.

    Args:
        model: a sentence-transformers ``SentenceTransformer`` / ``SparseEncoder`` / ``CrossEncoder``
            whose first module is a text ``Transformer`` (:func:`onnx_unsupported_reason`).
        fingerprint: the weights fingerprint (None: hashed from the weights).
        output: ``"last_hidden_state"`` (embedding models) or ``"logits"`` (MLM / classification).
        quantize: None (float32) or ``"int8"`` (dynamic quantisation).
        threads: intra-op threads (None: :func:`sensible_threads` when first run).
    """

    def __init__(
        self,
        model: Any,
        fingerprint: str | None,
        *,
        output: str = "last_hidden_state",
        quantize: str | None = None,
        threads: int | None = None,
    ) -> None:
        reason = onnx_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"this model cannot run on ONNX Runtime: {reason}")
        probe = model[0].tokenizer(["a b"], return_tensors="np")
        self.inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe]
        self.path = export_onnx(model[0].auto_model, fingerprint, self.inputs, output, quantize=quantize)
        self.output = output
        self.quantize = quantize
        self.threads = threads

    def run(self, features: dict[str, Any]) -> np.ndarray:
        """The graph's output for a batch of tokenizer features (torch tensors or numpy arrays)."""
        session = ort_session(self.path, self.threads or sensible_threads())
        feed = {n: np.asarray(features[n], dtype=np.int64) for n in self.inputs}
        return session.run(None, feed)[0]

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        """``Transformer.forward`` on ONNX Runtime: ``features`` plus ``token_embeddings``."""
        import torch

        out = dict(features)
        out["token_embeddings"] = torch.from_numpy(self.run(features))
        return out


def encode_with_onnx(
    model: Any,
    runner: OnnxTransformer,
    texts: Sequence[str],
    *,
    prompt: str | None = None,
    task: str | None = None,
    batch_size: int = 32,
    normalize: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """``SentenceTransformer.encode(texts, prompt=, batch_size=, normalize_embeddings=)`` with the
    transformer on ONNX Runtime: the same length sort and batches, the model's own ``preprocess``
    (prompt, truncation, ``prompt_length`` for prompt-aware pooling) and its own later modules.
    Returns float32 ``[len(texts), dim]``."""
    import torch
    from tqdm.auto import tqdm

    texts = list(texts)
    if not texts:
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else 0
        return np.zeros((0, int(dim or 0)), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), 0), dtype=np.float32)
    tail = list(model)[1:]
    kwargs = {"task": task} if task is not None else {}
    with torch.inference_mode():
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="encoding (onnx)", unit="batch", disable=not show_progress):
            idx = order[start : start + batch_size]
            features = model.preprocess([texts[i] for i in idx], prompt=prompt, **kwargs)
            features = runner.forward(features)
            for module in tail:
                features = module(features)
            emb = features["sentence_embedding"].float()
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            if out.shape[1] == 0:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb.numpy()
    return out
