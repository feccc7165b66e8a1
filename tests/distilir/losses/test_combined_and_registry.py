"""WeightedSum dispatch of different inputs, the name registry, and the package's public surface."""

from __future__ import annotations

import pytest
import torch

import distilir.losses as losses_pkg
from distilir.losses import (
    LOSSES,
    InfoNCELoss,
    ListwiseKLLoss,
    LossInputError,
    MarginMSELoss,
    TAIDLoss,
    WeightedSum,
    build_loss,
    in_batch_positive_index,
)


def batch():
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, generator=gen, dtype=torch.float64) * 3
    in_batch = torch.randn(2, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    return {
        "student_scores": student,
        "teacher_scores": teacher,
        "in_batch_scores": in_batch,
        "positive_idx": in_batch_positive_index(2, 3),
    }


def test_weighted_sum_feeds_each_loss_its_own_inputs():
    inputs = batch()
    kl, nce = ListwiseKLLoss(), InfoNCELoss(0.05)
    combined = WeightedSum([(kl, 1.0), (nce, 0.1)])
    value = combined(**inputs)
    expected = kl(inputs["student_scores"], inputs["teacher_scores"]) + 0.1 * nce(
        inputs["in_batch_scores"], torch.tensor([0, 3])
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert combined.last_components == pytest.approx(
        {
            "kl": kl(inputs["student_scores"], inputs["teacher_scores"]).item(),
            "infonce": nce(inputs["in_batch_scores"], torch.tensor([0, 3])).item(),
        },
        rel=1e-12,
    )
    value.backward()
    assert inputs["student_scores"].grad is not None and inputs["in_batch_scores"].grad is not None


def test_weighted_sum_input_map_override_and_duplicate_names():
    inputs = batch()
    other = torch.randn(2, 3, dtype=torch.float64) * 2
    first, second = MarginMSELoss(), MarginMSELoss()
    combined = WeightedSum([(first, 0.5), (second, 2.0, {"teacher_scores": "second_teacher"})])
    value = combined(**inputs, second_teacher=other)
    expected = 0.5 * first(inputs["student_scores"], inputs["teacher_scores"]) + 2.0 * second(
        inputs["student_scores"], other
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert list(combined.last_components) == ["margin-mse", "margin-mse_1"]


def test_weighted_sum_errors():
    inputs = batch()
    combined = WeightedSum([(ListwiseKLLoss(), 1.0), (InfoNCELoss(), 0.1)])
    del inputs["positive_idx"]
    with pytest.raises(LossInputError, match="'infonce'.*positive_idx"):
        combined(**inputs)
    with pytest.raises(ValueError, match="finite and >= 0"):
        WeightedSum([(ListwiseKLLoss(), -1.0)])
    with pytest.raises(ValueError, match="no input"):
        WeightedSum([(ListwiseKLLoss(), 1.0, {"scores": "x"})])
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])
    with pytest.raises(ValueError, match="torch.nn.Module"):
        WeightedSum([(lambda s, t: s, 1.0)])


def test_weighted_sum_accepts_plain_modules_by_signature():
    class Spread(torch.nn.Module):  # a user's own loss without declared inputs
        def forward(self, student_scores, mask=None):
            return student_scores.std()

    inputs = batch()
    value = WeightedSum([(Spread(), 3.0)])(**inputs)
    assert value.item() == pytest.approx(3.0 * inputs["student_scores"].std().item(), rel=1e-12)


def test_weighted_sum_set_progress_reaches_taid():
    taid = TAIDLoss(t_start=0.2, t_end=1.0)
    combined = WeightedSum([(taid, 1.0), (MarginMSELoss(), 0.5)])
    combined.set_progress(5, 10)
    assert taid.current_t == pytest.approx(0.6)


def test_registry_builds_every_loss():
    assert LOSSES.kinds() == sorted(
        ["margin-mse", "kl", "ranknet", "listnet", "listmle", "pld", "taid", "infonce", "weighted-sum"]
    )
    for name in LOSSES.kinds():
        if name == "weighted-sum":
            continue
        cls = LOSSES.get(name)
        loss = build_loss(name)
        assert type(loss) is cls and loss.name == name
        assert isinstance(loss.get_config_dict(), dict)
        assert "@" in loss.citation and "title" in loss.citation
    assert build_loss("Margin-MSE", mode="nway").mode == "nway"
    assert build_loss("kl", teacher_temperature=2.0).teacher_temperature == 2.0


def test_registry_errors_name_the_valid_losses():
    with pytest.raises(
        ValueError, match="unknown loss kind 'mse'; registered kinds: .*infonce.*weighted-sum"
    ):
        build_loss("mse")
    with pytest.raises(TypeError, match="cannot build loss 'kl'"):
        build_loss("kl", temperature=2.0)


def test_weighted_sum_config_round_trip():
    combined = WeightedSum(
        [
            (ListwiseKLLoss(teacher_temperature=2.0), 1.0),
            (InfoNCELoss(0.05), 0.1),
            (MarginMSELoss(), 0.5, {"teacher_scores": "other_teacher"}),
        ]
    )
    config = combined.get_config_dict()
    rebuilt = build_loss("weighted_sum", **config)  # the old spelling is the same loss
    assert rebuilt.get_config_dict() == config
    inputs = batch()
    inputs["other_teacher"] = inputs["teacher_scores"] * 2
    assert rebuilt(**inputs).item() == pytest.approx(combined(**inputs).item(), rel=1e-12)


def test_public_surface():
    assert sorted(losses_pkg.__all__) == sorted(
        [
            "LOSSES",
            "DistillationLoss",
            "InfoNCELoss",
            "ListMLELoss",
            "ListNetLoss",
            "ListwiseKLLoss",
            "LossInputError",
            "MarginMSELoss",
            "PLDLoss",
            "RankNetLoss",
            "TAIDLoss",
            "WeightedSum",
            "build_loss",
            "in_batch_positive_index",
        ]
    )
    for name in losses_pkg.__all__:
        assert hasattr(losses_pkg, name)
