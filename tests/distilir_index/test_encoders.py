"""DenseEncoder against sentence-transformers itself, and the mismatch check used by index loading."""

import numpy as np
import pytest
from distilir_index.encoders import DenseEncoder, EncoderMismatch, check_encoder_compatible
from distilir_index.models import fingerprint_folder, resolve_model


def test_packaged_name_resolves_to_a_folder(minilm_path):
    assert resolve_model("all-MiniLM-L6-v2") == minilm_path
    assert resolve_model("some-org/some-model") == "some-org/some-model"  # hub ids pass through


def test_vectors_equal_sentence_transformers(minilm):
    enc = DenseEncoder(minilm, normalize=True)
    texts = ["aspirin reduces the risk of heart attack", "BM25 is a ranking function"]
    ours = enc.encode_documents(texts)
    ref = minilm.encode(texts, normalize_embeddings=True)
    assert ours.dtype == np.float32 and ours.shape == (2, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_prompts_change_vectors(minilm):
    plain = DenseEncoder(minilm).encode_queries(["heart attack"])
    prompted = DenseEncoder(minilm, query_prompt="query: ").encode_queries(["heart attack"])
    ref = minilm.encode(["query: heart attack"], normalize_embeddings=True)
    np.testing.assert_allclose(prompted, ref, atol=1e-6)
    assert not np.allclose(plain, prompted)


def test_describe_and_mismatch(minilm, minilm_path):
    desc = DenseEncoder(minilm).describe()
    assert desc["dimension"] == 384 and desc["pooling"] == "mean" and desc["normalize"] is True
    assert desc["fingerprint"] == fingerprint_folder(minilm_path)
    check_encoder_compatible(desc, dict(desc))
    with pytest.raises(EncoderMismatch, match="normalize: index has True, query encoder has False"):
        check_encoder_compatible(desc, {**desc, "normalize": False})
    with pytest.raises(EncoderMismatch, match="fingerprint"):
        check_encoder_compatible(desc, {**desc, "fingerprint": "sha256:other"})


def test_bad_arguments(minilm):
    with pytest.raises(ValueError, match="max_length"):
        DenseEncoder(minilm, max_length=0)
    with pytest.raises(TypeError, match="single string"):
        DenseEncoder(minilm).encode_queries("not a list")


def test_one_loader_names_the_packaged_models_when_a_name_cannot_be_found(monkeypatch):
    from distilir_index.models import ModelNotAvailable, load_model
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable, match="not a local folder nor a packaged name.*all-MiniLM-L6-v2"):
        DenseEncoder("no-such-org/no-such-model-xyz")
    with pytest.raises(TypeError, match="packaged name .*paraphrase-MiniLM-L3-v2.*got int"):
        load_model(3, SentenceTransformer)
