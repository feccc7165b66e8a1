"""What every student must do: score like its own model, pass gradients, learn, round-trip to disk."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from distilir.losses import MarginMSELoss
from distilir.students import (
    BiEncoderStudent,
    CrossEncoderStudent,
    EncoderStudent,
    SpladeStudent,
    Student,
    load_student,
)

KINDS = ["bi-encoder", "splade", "cross-encoder"]


@pytest.fixture
def make_student(minilm, minilm_path, splade_model):
    """A fresh student of each kind, with its own copy of the weights, in eval mode (no dropout)."""

    def make(kind: str):
        if kind == "bi-encoder":
            student = BiEncoderStudent(copy.deepcopy(minilm), max_length=32)
        elif kind == "splade":
            student = SpladeStudent(copy.deepcopy(splade_model), max_length=32)
        else:
            student = CrossEncoderStudent(minilm_path, max_length=64, seed=0, device="cpu")
        return student.eval()

    return make


def reference_scores(student, queries, docs_lists) -> torch.Tensor:
    """[B, N] scores from the model's own inference API (encode / predict), not from the student code."""
    model = student.model
    if student.kind == "cross-encoder":
        pairs = [(q, d) for q, docs in zip(queries, docs_lists, strict=True) for d in docs]
        flat = model.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
        return flat.reshape(len(queries), -1)
    flat_docs = [d for docs in docs_lists for d in docs]
    q = model.encode_query(queries, convert_to_tensor=True)
    d = model.encode_document(flat_docs, convert_to_tensor=True)
    if q.is_sparse:
        q, d = q.to_dense(), d.to_dense()
    n = len(docs_lists[0])
    return torch.stack([q[i] @ d[i * n : (i + 1) * n].T for i in range(len(queries))])


@pytest.mark.parametrize("kind", KINDS)
def test_score_equals_the_models_own_inference(kind, make_student, scifact_batch):
    student = make_student(kind)
    with torch.no_grad():
        scores = student.score(scifact_batch.queries, scifact_batch.docs)
    expected = reference_scores(student, scifact_batch.queries, scifact_batch.docs)
    assert scores.shape == (2, 3)
    assert torch.allclose(scores, expected, rtol=1e-5, atol=1e-5), (scores, expected)
    # The judged relevant abstract beats the others for the pretrained encoders.
    if kind != "cross-encoder":
        assert bool((scores[:, 0:1] > scores[:, 1:]).all())


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_model_parameters(kind, make_student, scifact_batch):
    student = make_student(kind)
    out = student.forward_scores(scifact_batch.queries, scifact_batch.docs)
    assert out.scores.requires_grad
    (out.scores.sum() + out.regularization_loss).backward()
    params = dict(student.model.named_parameters())
    with_grad = [n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) > 0.8 * len(params), f"{len(with_grad)}/{len(params)} parameters got a gradient"
    assert any("word_embeddings" in n for n in with_grad)
    assert any("layer.1." in n for n in with_grad)


@pytest.mark.parametrize("kind", KINDS)
def test_one_margin_mse_step_lowers_the_loss_on_the_batch(kind, make_student, scifact_batch):
    student = make_student(kind)
    teacher = torch.tensor([[6.0, 1.0, 0.0], [5.0, 0.5, -1.0]])
    loss_fn = MarginMSELoss()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-5)
    before = loss_fn(student.score(scifact_batch.queries, scifact_batch.docs), teacher)
    before.backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        after = loss_fn(student.score(scifact_batch.queries, scifact_batch.docs), teacher)
    assert after.item() < before.item(), (before.item(), after.item())


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, make_student, scifact_batch, tmp_path):
    student = make_student(kind)
    path = student.save(tmp_path / "student")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "distilir-student/1" and manifest["kind"] == kind
    assert manifest["config"] == student.get_config_dict()
    loaded = load_student(path, device="cpu").eval()
    assert type(loaded) is type(student)
    with torch.no_grad():
        a = student.score(scifact_batch.queries, scifact_batch.docs)
        b = loaded.score(scifact_batch.queries, scifact_batch.docs)
    assert torch.allclose(a, b, atol=1e-6)
    assert {k: v for k, v in loaded.get_config_dict().items() if k != "model"} == {
        k: v for k, v in student.get_config_dict().items() if k != "model"
    }
    if kind != "cross-encoder":
        # trained at 32 tokens, the saved model still truncates as its base did at inference
        assert student.model.max_seq_length == 32 and student.inference_max_length > 32
        assert type(student.model)(str(path), device="cpu").max_seq_length == student.inference_max_length
        assert loaded.model.max_seq_length == 32  # the training setting comes back from the manifest
    # Saving again over it replaces it and leaves no temporary folders behind.
    student.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


@pytest.mark.parametrize("kind", KINDS)
def test_ragged_lists_equal_separate_lists(kind, make_student, scifact_batch):
    student = make_student(kind)
    docs = [scifact_batch.docs[0], scifact_batch.docs[1][:2]]
    with torch.no_grad():
        out = student.forward_scores(scifact_batch.queries, docs)
        rows = [student.score([q], [d]) for q, d in zip(scifact_batch.queries, docs, strict=True)]
    assert out.mask.tolist() == [[True, True, True], [True, True, False]]
    assert out.scores[1, 2].item() == 0.0
    assert torch.allclose(out.scores[0], rows[0][0], atol=1e-5)
    assert torch.allclose(out.scores[1, :2], rows[1][0], atol=1e-5)
    # An explicit mask over padded lists (how the trainer passes them) gives the same scores.
    padded = [scifact_batch.docs[0], [*scifact_batch.docs[1][:2], ""]]
    with torch.no_grad():
        masked = student.score(scifact_batch.queries, padded, out.mask)
    assert torch.equal(masked, out.scores)


def test_protocols(make_student):
    bi, cross = make_student("bi-encoder"), make_student("cross-encoder")
    assert isinstance(bi, Student) and isinstance(bi, EncoderStudent)
    assert isinstance(cross, Student) and not isinstance(cross, EncoderStudent)
