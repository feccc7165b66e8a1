"""The ONNX Runtime path (distilir_index.onnx) against the torch forward of the same models.

Reference: sentence-transformers' own ``encode`` in torch on the same texts; the ONNX path must agree
within 1e-5 (float32), for documents, queries with prompts, and through the index and the teachers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from distilir_index.encoders import DenseEncoder, check_encoder_compatible  # noqa: E402
from distilir_index.onnx import (  # noqa: E402
    OnnxTransformer,
    encode_with_onnx,
    export_onnx,
    resolve_backend,
)

TEXTS = [
    "Tides are caused by the gravitational pull of the moon and the sun on the oceans.",
    "short",
    "A much longer text about protein folding, " * 12,
    "Mitochondria are the powerhouse of the cell; they make ATP by oxidative phosphorylation.",
]


@pytest.fixture(scope="module")
def onnx_encoder(minilm_path):
    return DenseEncoder(minilm_path, backend="onnx", threads=1)


def test_auto_picks_onnx_for_a_named_model_and_torch_for_an_in_memory_one(minilm, minilm_path):
    assert DenseEncoder(minilm_path).backend == "onnx"
    assert DenseEncoder(minilm).backend == "torch"  # it may be a model being trained
    assert resolve_backend("auto", minilm, device="cuda") == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tensorrt")
    with pytest.raises(ValueError, match="not the CPU"):
        resolve_backend("onnx", minilm, device="cuda")


def test_documents_and_queries_match_torch_within_1e5(minilm, onnx_encoder):
    torch_docs = minilm.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(onnx_encoder.encode_documents(TEXTS), torch_docs, atol=1e-5)
    prompted = DenseEncoder(onnx_encoder.model, backend="onnx", query_prompt="query: ", threads=1)
    torch_q = minilm.encode(TEXTS, prompt="query: ", normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(prompted.encode_queries(TEXTS), torch_q, atol=1e-5)


def test_backend_is_recorded_but_not_compared(minilm, onnx_encoder):
    torch_encoder = DenseEncoder(onnx_encoder.model, backend="torch")
    a, b = onnx_encoder.describe(), torch_encoder.describe()
    assert (a["backend"], b["backend"]) == ("onnx", "torch")
    check_encoder_compatible(a, b)  # a runtime choice: an index built on one is queried with the other


def test_int8_queries_stay_close_and_need_onnx(minilm, minilm_path):
    int8 = DenseEncoder(minilm_path, query_quantization="int8", threads=1)
    assert int8.describe()["query_quantization"] == "int8"
    fp32 = minilm.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    q = int8.encode_queries(TEXTS)
    cosine = (q * fp32).sum(1)
    assert cosine.min() > 0.85 and not np.allclose(q, fp32, atol=1e-5)  # quantised, yet close
    np.testing.assert_allclose(int8.encode_documents(TEXTS), fp32, atol=1e-5)  # documents stay fp32
    with pytest.raises(ValueError, match="needs the ONNX backend"):
        DenseEncoder(minilm_path, backend="torch", query_quantization="int8")
    with pytest.raises(ValueError, match="query_quantization must be"):
        DenseEncoder(minilm_path, query_quantization="int4")


def test_export_is_cached_per_fingerprint(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path))
    hf = minilm[0].auto_model
    first = export_onnx(hf, None, ["input_ids", "attention_mask", "token_type_ids"])
    stamp = first.stat().st_mtime_ns
    again = export_onnx(hf, None, ["input_ids", "attention_mask", "token_type_ids"])
    assert again == first and again.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.tmp"))
    runner = OnnxTransformer(minilm, None, threads=1)
    empty = encode_with_onnx(minilm, runner, [])
    assert empty.shape == (0, 384)


def test_index_and_retriever_search_the_same_with_either_backend(minilm_path, tmp_path):
    from distilir_index import Retriever
    from distilir_index.dense import DenseIndex

    index = DenseIndex(DenseEncoder(minilm_path, backend="torch"), index="flat")
    index.add([f"d{i}" for i in range(len(TEXTS))], TEXTS)
    index.save(tmp_path / "idx")
    torch_retriever = Retriever.load(tmp_path / "idx", encoder_options={"backend": "torch"})
    torch_hits = [(h.id, h.score) for h in torch_retriever.search("what causes tides", k=4)]
    onnx = Retriever.load(tmp_path / "idx", encoder_options={"backend": "onnx", "threads": 1})
    onnx_hits = [(h.id, h.score) for h in onnx.search("what causes tides", k=4)]
    assert [h[0] for h in onnx_hits] == [h[0] for h in torch_hits]
    np.testing.assert_allclose([h[1] for h in onnx_hits], [h[1] for h in torch_hits], atol=1e-5)
