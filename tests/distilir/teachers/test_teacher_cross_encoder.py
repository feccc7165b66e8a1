"""CrossEncoderTeacher gives CrossEncoder.predict's numbers, in the caller's order, duplicates included.

No trained cross-encoder exists offline, so the model is CrossEncoder(all-MiniLM-L6-v2, num_labels=1):
the real 6-layer MiniLM with a classification head that we initialise with a fixed seed (random, not
trained). That is enough for what is tested here: the mechanics and the parity with ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilir.teachers.base import TeacherError
from distilir.teachers.cross_encoder import CrossEncoderTeacher, _token_budget_batches


@pytest.fixture(scope="module")
def cross_encoder(minilm_path):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(minilm_path, num_labels=1, max_length=64, device="cpu")
    g = torch.Generator().manual_seed(0)
    head = ce.model.classifier
    with torch.no_grad():  # a seeded head with unit-scale weights, so scores spread over a few units
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.5)
        head.bias.zero_()
    return ce


@pytest.fixture(scope="module")
def pairs(small_lists):
    """Mixed-length pairs with duplicates scattered through the list."""
    queries, docs, candidates, _ = small_lists
    qids = list(candidates)[:2]
    base = [(queries[q], docs[d][: 150 + 100 * j]) for q in qids for j, d in enumerate(candidates[q][:4])]
    base.append((queries[qids[0]], "short doc"))
    return base + [base[3], base[0], base[8], base[3]]


def test_same_scores_as_predict_in_original_order(cross_encoder, pairs):
    teacher = CrossEncoderTeacher(cross_encoder, max_length=512, batch_size=8)
    assert teacher.max_length == 64  # the model's own limit wins
    ours = teacher.score_pairs(pairs)
    ref = cross_encoder.predict(pairs, batch_size=8, activation_fn=torch.nn.Identity())
    assert ours.shape == (len(pairs),)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert np.ptp(ref) > 0.05  # the seeded head gives distinguishable scores
    assert ours[-1] == ours[3] and ours[-3] == ours[0]  # duplicates get their pair's score

    # score / score_many split the flat result back per query
    q, d = pairs[0][0], [p[1] for p in pairs[:4]]
    np.testing.assert_allclose(teacher.score(q, d), ref[:4], atol=1e-4)
    many = teacher.score_many([pairs[0][0], pairs[4][0]], [d, [p[1] for p in pairs[4:8]]])
    np.testing.assert_allclose(many[0] + many[1], ref[:8], atol=1e-4)
    assert teacher.score_many([], []) == []

    # a token budget changes the batching, not the numbers
    budget = CrossEncoderTeacher(cross_encoder, batch_size=8, max_batch_tokens=150)
    np.testing.assert_allclose(budget.score_pairs(pairs), ref, atol=1e-4)


def test_sigmoid_activation_and_config(cross_encoder, pairs):
    logits = CrossEncoderTeacher(cross_encoder).score_pairs(pairs[:5])
    probs = CrossEncoderTeacher(cross_encoder, activation="sigmoid")
    assert probs.score_type == "probability"
    np.testing.assert_allclose(probs.score_pairs(pairs[:5]), 1 / (1 + np.exp(-logits)), atol=1e-6)

    t = CrossEncoderTeacher(cross_encoder)
    cfg = t.get_config_dict()
    assert cfg["kind"] == "cross-encoder" and cfg["max_length"] == 64 and cfg["activation"] is None
    assert cfg["model"]["fingerprint"].startswith("sha256:") and t.score_type == "logit"
    assert t.fingerprint != probs.fingerprint  # another activation is another teacher
    assert CrossEncoderTeacher(cross_encoder, batch_size=3).fingerprint == t.fingerprint  # runtime only


def test_loads_by_name_and_fingerprints_a_new_head(minilm_path):
    # a bi-encoder folder has no classification head: the teacher must hash the (random) weights,
    # since the folder's file hash would be the same for two differently initialised heads
    torch.manual_seed(1)
    a = CrossEncoderTeacher(minilm_path, max_length=32)
    torch.manual_seed(2)
    b = CrossEncoderTeacher(minilm_path, max_length=32)
    assert "head" in a.get_config_dict()["model"]
    assert a.fingerprint != b.fingerprint


def test_input_validation(cross_encoder):
    with pytest.raises(TeacherError, match="activation"):
        CrossEncoderTeacher(cross_encoder, activation="softmax")
    with pytest.raises(TeacherError, match="batch_size"):
        CrossEncoderTeacher(cross_encoder, batch_size=0)
    with pytest.raises(TeacherError, match="model must be"):
        CrossEncoderTeacher(42)
    t = CrossEncoderTeacher(cross_encoder)
    with pytest.raises(TeacherError, match="one list per query"):
        t.score_many(["q"], [])
    with pytest.raises(TeacherError, match="expected a"):
        t.score_pairs(["not a pair"])


def test_token_budget_batches():
    lengths = np.array([512, 400, 300, 100, 100, 50, 10])
    assert _token_budget_batches(lengths, 4, None) == [(0, 4), (4, 7)]
    # 1000 tokens: 1 x 512, then 2 x 400, then 3 x 300, then 4 (capped by batch_size) ...
    assert _token_budget_batches(lengths, 4, 1000) == [(0, 1), (1, 3), (3, 7)]
    assert _token_budget_batches(np.array([600]), 4, 100) == [(0, 1)]


def test_fallback_path_through_predict_gives_the_same_scores(cross_encoder, pairs):
    # models the fast path cannot feed (chat-template rerankers, prompts) go through predict on the
    # de-duplicated pairs; force that path on this model to check it end to end
    teacher = CrossEncoderTeacher(cross_encoder, batch_size=8)
    teacher._fast = False
    ref = cross_encoder.predict(pairs[:6], batch_size=8, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(teacher.score_pairs(pairs[:6] + pairs[:2]), [*ref, *ref[:2]], atol=1e-4)


def test_threads_are_bounded_and_restored():
    from distilir.teachers.cross_encoder import available_cores, sensible_threads, torch_threads

    assert 1 <= sensible_threads() <= available_cores()
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_onnx_backend_gives_predicts_numbers(cross_encoder, pairs, tmp_path, monkeypatch):
    """ONNX Runtime scores the same padded, length-sorted batches: predict's numbers within float
    rounding; the export is cached per weights fingerprint; the backend is not part of the fingerprint."""
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path))
    ref = cross_encoder.predict(pairs, batch_size=8, activation_fn=torch.nn.Identity())
    attn = cross_encoder.model.config._attn_implementation
    teacher = CrossEncoderTeacher(cross_encoder, batch_size=4, backend="onnx")
    got = teacher.score_pairs(pairs)
    assert cross_encoder.model.config._attn_implementation == attn  # exported eager, then restored
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert np.ptp(got) > 0.05 and got[-1] == got[3]
    exported = list((tmp_path / "onnx").glob("cross-encoder-*.onnx"))
    assert len(exported) == 1 and not list((tmp_path / "onnx").glob("*.tmp"))
    assert teacher.fingerprint == CrossEncoderTeacher(cross_encoder).fingerprint
    again = CrossEncoderTeacher(cross_encoder, batch_size=8, backend="onnx")
    np.testing.assert_allclose(again.score_pairs(pairs[:5]), ref[:5], atol=1e-4, rtol=0)
    assert list((tmp_path / "onnx").glob("cross-encoder-*.onnx")) == exported  # reused, not re-exported

    with pytest.raises(TeacherError, match="backend must be one of"):
        CrossEncoderTeacher(cross_encoder, backend="tensorrt")
