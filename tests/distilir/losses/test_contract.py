"""The contract every score-tensor loss keeps: exact padding, gradients to the student only, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from distilir.losses import (
    InfoNCELoss,
    ListMLELoss,
    ListNetLoss,
    ListwiseKLLoss,
    LossInputError,
    MarginMSELoss,
    PLDLoss,
    RankNetLoss,
    TAIDLoss,
)

LISTWISE = {
    "margin_mse": lambda: MarginMSELoss("pairwise"),
    "margin_mse_nway": lambda: MarginMSELoss("nway"),
    "kl": lambda: ListwiseKLLoss(student_temperature=2.0, teacher_temperature=0.5),
    "ranknet": lambda: RankNetLoss(sigma=1.5),
    "listnet": lambda: ListNetLoss(temperature=2.0),
    "listmle": ListMLELoss,
    "pld": PLDLoss,
    "pld_teacher_order": lambda: PLDLoss(positive_first=False),
    "taid": lambda: TAIDLoss(t_start=0.5),
}
POSITIVE_FIRST = {"margin_mse", "pld"}

# Lists of different lengths (4, 2, 3), positive first.
ROWS_S = [[1.2, 0.3, -0.5, 2.0], [0.7, 0.9], [-1.0, 0.4, 0.1]]
ROWS_T = [[5.0, 1.0, 3.0, -2.0], [2.0, -1.0], [0.5, 4.0, 1.5]]


def padded(fill_s: float, fill_t: float):
    n = max(len(r) for r in ROWS_S)
    s = torch.full((3, n), fill_s, dtype=torch.float64)
    t = torch.full((3, n), fill_t, dtype=torch.float64)
    mask = torch.zeros(3, n, dtype=torch.bool)
    for i, (rs, rt) in enumerate(zip(ROWS_S, ROWS_T, strict=True)):
        s[i, : len(rs)] = torch.tensor(rs, dtype=torch.float64)
        t[i, : len(rt)] = torch.tensor(rt, dtype=torch.float64)
        mask[i, : len(rs)] = True
    return s, t, mask


@pytest.mark.parametrize("name", sorted(LISTWISE))
@pytest.mark.parametrize(
    ("fill_s", "fill_t"), [(0.0, 0.0), (1e6, float("nan")), (float("nan"), float("-inf"))]
)
def test_padded_batch_equals_unpadded_lists(name, fill_s, fill_t):
    loss = LISTWISE[name]()
    separate = [
        loss(torch.tensor([rs], dtype=torch.float64), torch.tensor([rt], dtype=torch.float64)).item()
        for rs, rt in zip(ROWS_S, ROWS_T, strict=True)
    ]
    s, t, mask = padded(fill_s, fill_t)
    student = s.clone().requires_grad_(True)
    value = loss(student, t, mask)
    assert value.item() == pytest.approx(sum(separate) / len(separate), rel=1e-12, abs=1e-12)
    value.backward()
    assert torch.isfinite(student.grad).all()
    assert torch.equal(student.grad[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))
    # The gradient of a real entry is that of its own list, divided by the batch size.
    for i, (rs, rt) in enumerate(zip(ROWS_S, ROWS_T, strict=True)):
        row = torch.tensor([rs], dtype=torch.float64, requires_grad=True)
        loss(row, torch.tensor([rt], dtype=torch.float64)).backward()
        assert torch.allclose(student.grad[i, : len(rs)], row.grad[0] / 3, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_all_true_mask_equals_no_mask(name):
    loss = LISTWISE[name]()
    s, t, _ = padded(0.0, 0.0)
    s[1, 2:] = torch.tensor([0.2, -0.1], dtype=torch.float64)
    t[1, 2:] = torch.tensor([1.0, 3.0], dtype=torch.float64)
    full = torch.ones_like(s, dtype=torch.bool)
    assert loss(s, t, full).item() == pytest.approx(loss(s, t).item(), rel=1e-15)


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_gradient_reaches_the_student_only(name):
    loss = LISTWISE[name]()
    s, t, mask = padded(0.0, 0.0)
    student = s.clone().float().requires_grad_(True)
    teacher = t.clone().float().requires_grad_(True)
    loss(student, teacher, mask).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_float32_matches_float64(name):
    loss = LISTWISE[name]()
    s, t, mask = padded(0.0, 0.0)
    assert loss(s.float(), t.float(), mask).item() == pytest.approx(loss(s, t, mask).item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LISTWISE))
def test_input_validation(name):
    loss = LISTWISE[name]()
    s, t, mask = padded(0.0, 0.0)
    with pytest.raises(LossInputError, match="2-D"):
        loss(s[0], t[0])
    with pytest.raises(LossInputError, match="same shape"):
        loss(s, t[:, :3])
    with pytest.raises(LossInputError, match="torch.Tensor"):
        loss(s.tolist(), t)
    with pytest.raises(LossInputError, match="at least 2 candidates"):
        loss(s[:, :1], t[:, :1])
    bad = t.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(LossInputError, match="NaN or infinite"):
        loss(s, bad)
    bad[0, 1] = float("inf")
    with pytest.raises(LossInputError, match=r"\(row, column\) \[\[0, 1\]\]"):
        loss(s, bad, mask)
    with pytest.raises(LossInputError, match="torch.bool"):
        loss(s, t, mask.long())
    with pytest.raises(LossInputError, match="mask has shape"):
        loss(s, t, mask[:, :3])
    short = mask.clone()
    short[1, 1] = False
    with pytest.raises(LossInputError, match=r"rows \[1\] have \[1\]"):
        loss(s, t, short)
    if name in POSITIVE_FIRST:
        first = mask.clone()
        first[0, 0] = False
        with pytest.raises(LossInputError, match="column 0"):
            loss(s, t, first)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ListwiseKLLoss(student_temperature=0.0), "student_temperature"),
        (lambda: ListwiseKLLoss(teacher_temperature=-1.0), "teacher_temperature"),
        (lambda: ListNetLoss(temperature=float("inf")), "temperature"),
        (lambda: RankNetLoss(sigma=0), "sigma"),
        (lambda: PLDLoss(temperature="warm"), "temperature"),
        (lambda: MarginMSELoss("listwise"), "pairwise"),
        (lambda: TAIDLoss(t_start=0.8, t_end=0.5), "t_start"),
        (lambda: TAIDLoss(t_end=1.5), "t_end"),
        (lambda: TAIDLoss(beta=1.0), "beta"),
        (lambda: TAIDLoss(temperature=0), "temperature"),
        (lambda: InfoNCELoss(temperature=-0.05), "temperature"),
    ],
)
def test_constructor_validation(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_taid_set_progress_validation():
    with pytest.raises(ValueError, match="total_steps"):
        TAIDLoss().set_progress(1, 0)
    with pytest.raises(ValueError, match="step"):
        TAIDLoss().set_progress(-1, 10)


def test_infonce_masked_columns_equal_dropped_columns():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    positives = torch.tensor([3, 2])
    loss = InfoNCELoss(0.1)
    separate = []
    for i in range(2):
        keep = mask[i].nonzero().flatten()
        new_pos = int((keep == positives[i]).nonzero())
        separate.append(loss(scores[i : i + 1, keep], torch.tensor([new_pos])).item())
    student = scores.clone().requires_grad_(True)
    value = loss(student, positives, mask)
    value.backward()
    assert value.item() == pytest.approx(sum(separate) / 2, rel=1e-12)
    assert torch.equal(student.grad[~mask], torch.zeros(3, dtype=torch.float64))


def test_infonce_input_validation():
    scores = torch.randn(2, 4)
    loss = InfoNCELoss()
    with pytest.raises(LossInputError, match="shape \\[2\\]"):
        loss(scores, torch.tensor([0, 1, 2]))
    with pytest.raises(LossInputError, match="shape \\[2\\]"):
        loss(scores, torch.tensor([0.0, 1.0]))
    with pytest.raises(LossInputError, match="must lie in"):
        loss(scores, torch.tensor([0, 4]))
    with pytest.raises(LossInputError, match="positive column is masked"):
        loss(scores, torch.tensor([0, 1]), torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool))
    with pytest.raises(LossInputError, match="whole number"):
        loss.from_embeddings(torch.randn(2, 3), torch.randn(5, 3))
    with pytest.raises(LossInputError, match="same D"):
        loss.from_embeddings(torch.randn(2, 3), torch.randn(4, 2))


def test_losses_are_finite_for_extreme_scores():
    s = torch.tensor([[300.0, -300.0, 0.0], [1e4, 1e4 - 1, -1e4]], requires_grad=True)
    t = torch.tensor([[50.0, -50.0, 0.0], [0.0, 1.0, 2.0]])
    for factory in LISTWISE.values():
        value = factory()(s, t)
        value.backward()
        assert math.isfinite(value.item())
        assert torch.isfinite(s.grad).all()
        s.grad = None
