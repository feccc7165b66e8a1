"""Adding a component is one module plus one registry line (issue 15's acceptance).

Each module in this folder is a small real component of one stage: a teacher, a loss, a student and an
index kind. The test registers each with exactly one line and then uses it only through the public
entry points that read the registries (``build_teacher`` specs, ``build_loss`` / training configs,
``build_student`` / ``load_student``, ``make_index`` / ``load_index``), as a user's own plug-in would.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distilir_index import load_index, make_index
from distilir_index.loading import INDEXES, register_index_kind

from distilir.losses import LOSSES, build_loss
from distilir.students import STUDENTS, build_student, load_student
from distilir.teachers import TEACHERS, build_teacher
from distilir.training import Trainer, TrainingList, load_config

HERE = "tests.distilir.extensions"


@pytest.fixture
def registered():
    saved = [(r, dict(r._entries)) for r in (TEACHERS, LOSSES, STUDENTS, INDEXES)]
    TEACHERS.register("overlap", f"{HERE}.overlap_teacher:OverlapTeacher")
    LOSSES.register("hinge", f"{HERE}.hinge_loss:PairwiseHingeLoss")
    STUDENTS.register("layer-drop", f"{HERE}.layer_drop_student:LayerDropStudent")
    register_index_kind("numpy-flat", f"{HERE}.numpy_index:NumpyFlatIndex")
    yield
    for registry, entries in saved:
        registry._entries.clear()
        registry._entries.update(entries)


def test_a_new_teacher_is_built_from_a_spec_and_joins_an_ensemble(registered):
    teacher = build_teacher("overlap")
    assert teacher.score("heart attacks", ["a heart attack", "the heart", "cholesterol"]) == [1.0, 0.5, 0.0]
    ensemble = build_teacher("ensemble?normalization=minmax:overlap*1+bm25*1", corpus=["a heart attack", "x"])
    assert ensemble.score("heart attack", ["a heart attack", "x"])[0] > 0


def test_a_new_loss_is_built_by_name_and_matches_its_formula(registered):
    loss = build_loss("Hinge", margin=0.5)
    s = torch.tensor([[1.0, 0.2, 0.9]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    # pairs the teacher orders: (0,1), (0,2), (1,2); hinge max(0, 0.5 - (s_i - s_j))
    expected = (max(0, 0.5 - 0.8) + max(0, 0.5 - 0.1) + max(0, 0.5 + 0.7)) / 3
    assert float(loss(s, t)) == pytest.approx(expected)
    combined = build_loss("weighted-sum", losses=[{"name": "kl"}, {"name": "hinge", "weight": 0.5}])
    assert combined.get_config_dict()["losses"][1] == {"name": "hinge", "weight": 0.5, "margin": 1.0}


def test_a_new_student_and_loss_train_from_a_config_and_reload(registered, tmp_path):
    words = "heart attack cholesterol statin exercise rate aspirin risk".split()
    lists = [
        TrainingList(
            f"q{i}",
            f"{words[i]} {words[i + 1]}",
            tuple(f"d{i}-{j}" for j in range(4)),
            tuple(" ".join(words[(i + j) % 8 : (i + j) % 8 + 3]) for j in range(4)),
            (3.0, 2.0, 1.0, 0.0),
        )
        for i in range(6)
    ]
    config = load_config(
        None,
        {
            "output_dir": str(tmp_path / "run"),
            "student": {
                "kind": "layer-drop",
                "model": "all-MiniLM-L6-v2",
                "max_length": 16,
                "params": {"layers": 1},
            },
            "losses": [{"name": "hinge"}],
            "optim.steps": 2,
            "optim.batch_size": 3,
            "data.candidates_per_query": 4,
        },
    )
    result = Trainer(config, lists=lists, teacher={"fingerprint": "overlap-test"}).train()
    assert result.steps == 2 and np.isfinite(result.history[-1]["loss"])
    student = load_student(result.student_dir)
    assert type(student) is STUDENTS.get("layer-drop") and student.layers == 1
    assert student.model[0].auto_model.config.num_hidden_layers == 1
    assert result.manifest["student"]["loads_with"] == "SentenceTransformer"
    assert type(build_student("layer_drop", model="all-MiniLM-L6-v2", layers=2)) is STUDENTS.get("layer-drop")


def test_a_new_index_kind_is_made_and_loaded_by_kind(registered, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 8)).astype(np.float32)
    index = make_index("numpy-flat", dimension=8)
    index.add([f"d{i}" for i in range(20)], vectors)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    exact = np.argsort(-(vectors[:3] @ vectors.T), axis=1)[:, :5]
    assert [[h.id for h in hits] for hits in loaded.search(vectors[:3], k=5)] == [
        [f"d{j}" for j in row] for row in exact
    ]
