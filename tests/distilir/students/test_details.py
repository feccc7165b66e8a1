"""Batch layout and validation, in-batch scores, FLOPS, cross-encoder seeding, registry and public surface."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import distilir.students as students_pkg
from distilir.losses import InfoNCELoss, ListwiseKLLoss, WeightedSum
from distilir.students import (
    STUDENTS,
    BiEncoderStudent,
    CrossEncoderStudent,
    FlopsSchedule,
    SpladeStudent,
    StudentError,
    build_student,
    flops,
    load_student,
    quadratic_warmup,
)
from distilir.students.base import layout_batch


# ---------------------------------------------------------------------------------------- layout
def test_layout_pads_ragged_lists_and_indexes_real_documents():
    layout = layout_batch(["q0", "q1"], [["a", "b", "c"], ["d"]])
    assert layout.mask.tolist() == [[True, True, True], [True, False, False]]
    assert layout.flat_docs == ["a", "b", "c", "d"]
    assert layout.positive_index().tolist() == [0, 3]
    scattered = layout.scatter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert scattered.tolist() == [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]


def test_layout_with_an_explicit_mask_skips_masked_documents():
    mask = torch.tensor([[True, False, True], [True, True, False]])
    layout = layout_batch(["q0", "q1"], [["a", "", "c"], ["d", "e", ""]], mask)
    assert layout.flat_docs == ["a", "c", "d", "e"]
    assert layout.positive_index().tolist() == [0, 2]
    assert layout_batch(["q"], [["", "b"]], torch.tensor([[False, True]])).positive_index() is None


def test_false_negative_mask_hides_copies_of_the_positive():
    layout = layout_batch(["q0", "q1"], [["pos0", "x"], ["pos1", "pos0"]])
    assert layout.false_negative_mask().tolist() == [[True, True, True, False], [True, True, True, True]]
    assert layout_batch(["q0", "q1"], [["a", "b"], ["c", "d"]]).false_negative_mask() is None


@pytest.mark.parametrize(
    ("queries", "docs", "mask", "message"),
    [
        ("a query", [["d"]], None, "single string"),
        ([], [], None, "empty batch"),
        (["q0", "q1"], [["d"]], None, "one list of documents per query: 2 queries, got 1"),
        (["q0"], [[]], None, "is empty"),
        (["q0"], ["abc"], None, "must be a list of strings"),
        (["q0"], [["d", 3]], None, "must be a list of strings"),
        (["q0"], [["a", "b"]], torch.tensor([[1, 1]]), "bool tensor of shape \\[1, 2\\]"),
        (["q0", "q1"], [["a", "b"], ["c"]], torch.ones(2, 2, dtype=torch.bool), "lengths are \\[2, 1\\]"),
        (["q0"], [["a", "b"]], torch.tensor([[False, False]]), "no unmasked document"),
    ],
)
def test_layout_validation(queries, docs, mask, message):
    with pytest.raises(StudentError, match=message):
        layout_batch(queries, docs, mask)


# ---------------------------------------------------------------------------------------- bi-encoder
def test_in_batch_scores_and_infonce_end_to_end(minilm, scifact_batch):
    student = BiEncoderStudent(minilm).eval()
    with torch.no_grad():
        out = student.forward_scores(scifact_batch.queries, scifact_batch.docs)
    flat = [d for docs in scifact_batch.docs for d in docs]
    q = minilm.encode_query(scifact_batch.queries, convert_to_tensor=True)
    d = minilm.encode_document(flat, convert_to_tensor=True)
    assert out.in_batch_scores.shape == (2, 6)
    assert torch.allclose(out.in_batch_scores, q @ d.T, atol=1e-5)
    assert out.positive_idx.tolist() == [0, 3]
    assert out.in_batch_mask is None
    assert torch.equal(out.scores[0], out.in_batch_scores[0, :3]) and torch.equal(
        out.scores[1], out.in_batch_scores[1, 3:]
    )
    teacher = torch.tensor([[4.0, 1.0, 0.0], [3.0, 0.0, 1.0]])
    combined = WeightedSum([(ListwiseKLLoss(), 1.0), (InfoNCELoss(0.05), 0.1)])
    value = combined(**out.loss_inputs(teacher))
    expected = ListwiseKLLoss()(out.scores, teacher) + 0.1 * InfoNCELoss(0.05)(
        out.in_batch_scores, torch.tensor([0, 3])
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_cosine_and_dot_similarity(minilm, scifact_batch):
    from sentence_transformers import SentenceTransformer

    unnormalised = SentenceTransformer(modules=[minilm[0], minilm[1]], device="cpu")  # no Normalize module
    queries, docs = scifact_batch.queries[:1], [scifact_batch.docs[0]]
    q = unnormalised.encode_query(queries, convert_to_tensor=True)
    d = unnormalised.encode_document(docs[0], convert_to_tensor=True)
    with torch.no_grad():
        dot = BiEncoderStudent(unnormalised, similarity="dot").eval().score(queries, docs)
        cos = BiEncoderStudent(unnormalised, similarity="cosine").eval().score(queries, docs)
    assert torch.allclose(dot[0], q[0] @ d.T, rtol=1e-5, atol=1e-5)
    cosine = (q[0] @ d.T) / (q[0].norm() * d.norm(dim=1))
    assert torch.allclose(cos[0], cosine, atol=1e-6)
    assert not torch.allclose(dot, cos, atol=1e-2)


def test_student_constructor_validation(minilm):
    with pytest.raises(StudentError, match="'dot' or 'cosine'"):
        BiEncoderStudent(minilm, similarity="l2")
    with pytest.raises(StudentError, match="max_length"):
        BiEncoderStudent(minilm, max_length=0)
    with pytest.raises(StudentError, match="SentenceTransformer"):
        BiEncoderStudent(42)
    with pytest.raises(StudentError, match="list of strings"):
        BiEncoderStudent(minilm).encode_queries("one text")


# ---------------------------------------------------------------------------------------- FLOPS / SPLADE
def test_flops_by_hand():
    w = torch.tensor([[0.0, 1.0, 2.0, -4.0], [0.0, 3.0, 0.0, 0.0]])
    # column means of |w|: 0, 2, 1, 2  ->  0 + 4 + 1 + 4
    assert flops(w).item() == pytest.approx(9.0)
    with pytest.raises(ValueError, match="vocab"):
        flops(torch.zeros(3))


def test_quadratic_warmup_schedule():
    assert [quadratic_warmup(s, 4) for s in (0, 1, 2, 4, 10)] == [0.0, 1 / 16, 1 / 4, 1.0, 1.0]
    assert quadratic_warmup(0, 0) == 1.0
    assert FlopsSchedule(1e-3, 2e-3, 10).weights_at(5) == pytest.approx((2.5e-4, 5e-4))
    with pytest.raises(ValueError, match="query_weight"):
        FlopsSchedule(-1.0)


def test_splade_regularization_matches_flops_of_its_vectors(splade_model, scifact_batch):
    student = SpladeStudent(
        copy.deepcopy(splade_model), flops_query=1e-3, flops_doc=2e-3, flops_warmup_steps=10, max_length=32
    ).eval()
    assert student.set_progress(5) == pytest.approx((2.5e-4, 5e-4))
    out = student.forward_scores(scifact_batch.queries, scifact_batch.docs)
    q = student.model.encode_query(scifact_batch.queries, convert_to_tensor=True).to_dense().numpy()
    d = student.model.encode_document(
        [x for docs in scifact_batch.docs for x in docs], convert_to_tensor=True
    )
    d = d.to_dense().numpy()
    by_hand_q = float(sum(np.abs(q[:, j]).mean() ** 2 for j in np.flatnonzero(np.abs(q).sum(axis=0))))
    by_hand_d = float(sum(np.abs(d[:, j]).mean() ** 2 for j in np.flatnonzero(np.abs(d).sum(axis=0))))
    assert out.regularization["flops_query"].item() == pytest.approx(by_hand_q, rel=1e-5)
    assert out.regularization["flops_doc"].item() == pytest.approx(by_hand_d, rel=1e-5)
    assert out.regularization_loss.item() == pytest.approx(2.5e-4 * by_hand_q + 5e-4 * by_hand_d, rel=1e-5)
    assert out.regularization_loss.requires_grad
    assert (q > 0).sum(axis=1).max() < 0.05 * q.shape[1]  # the vectors are sparse
    assert student.get_config_dict()["flops_warmup_steps"] == 10


# ---------------------------------------------------------------------------------------- cross-encoder
def test_cross_encoder_seed_makes_the_new_head_reproducible(minilm_path, scifact_batch):
    queries, docs = scifact_batch.queries[:1], [scifact_batch.docs[0][:2]]
    with torch.no_grad():
        a = CrossEncoderStudent(minilm_path, max_length=32, seed=1).eval().score(queries, docs)
        b = CrossEncoderStudent(minilm_path, max_length=32, seed=1).eval().score(queries, docs)
        c = CrossEncoderStudent(minilm_path, max_length=32, seed=2).eval().score(queries, docs)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    out = CrossEncoderStudent(minilm_path, max_length=32, seed=1).forward_scores(queries, docs)
    assert out.in_batch_scores is None and out.positive_idx is None
    assert set(out.loss_inputs(torch.zeros(1, 2))) == {"student_scores", "teacher_scores", "mask"}


def test_cross_encoder_reports_its_new_head_until_saved(minilm_path, tmp_path):
    """Built from a bi-encoder folder the head is new (optim.head_lr applies to it); saved and loaded
    again, the checkpoint has a trained head and nothing is new."""
    student = CrossEncoderStudent(minilm_path, max_length=32, seed=1)
    hf = student.model.model
    names = {n for n, p in hf.named_parameters() if any(p is q for q in student.new_parameters())}
    assert names == {"classifier.weight", "classifier.bias"}
    student.save(tmp_path / "ce")
    assert CrossEncoderStudent(str(tmp_path / "ce"), max_length=32).new_parameters() == []


# ---------------------------------------------------------------------------------------- registry
def test_registry_and_loading_errors(tmp_path):
    assert STUDENTS.kinds() == ["bi-encoder", "cross-encoder", "splade"]
    with pytest.raises(StudentError, match="unknown student kind 'colbert'; registered kinds: bi-encoder"):
        build_student("colbert")
    assert type(build_student("BI_ENCODER", model="paraphrase-MiniLM-L3-v2")) is BiEncoderStudent
    with pytest.raises(StudentError, match="cannot build a 'splade' student"):
        build_student("splade", similarity="dot")
    with pytest.raises(StudentError, match="not a saved distilir student"):
        load_student(tmp_path)
    (tmp_path / "manifest.json").write_text(
        '{"format": "distilir-student/1", "kind": "splade", "config": {}}'
    )
    with pytest.raises(StudentError, match="holds a 'splade' student"):
        BiEncoderStudent.load(tmp_path)


def test_public_surface():
    assert sorted(students_pkg.__all__) == sorted(
        [
            "STUDENTS",
            "BaseStudent",
            "BiEncoderStudent",
            "CrossEncoderStudent",
            "EncoderStudent",
            "FlopsSchedule",
            "SpladeStudent",
            "Student",
            "StudentError",
            "StudentOutput",
            "build_student",
            "flops",
            "load_student",
            "quadratic_warmup",
        ]
    )
    for name in students_pkg.__all__:
        assert hasattr(students_pkg, name)
