"""The trainer end to end on real SciFact texts and real students (few steps, short inputs).

The teacher scores come from the FAKE lexical teacher of conftest.py (see there)."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
import torch

from distilir.training import (
    CheckpointError,
    Trainer,
    TrainingError,
    latest_checkpoint,
    load_config,
)
from distilir.training.data import collate, select_candidates

REQUIRED_MANIFEST_FIELDS = (
    "format",
    "kind",
    "config",
    "student",
    "teacher",
    "losses",
    "data",
    "optimisation",
    "steps",
    "seed",
    "metrics",
    "time",
    "producer",
    "training_config",
)


def _config(out, **overrides):
    base = {
        "student.model": "all-MiniLM-L6-v2",
        "student.max_length": 32,
        "optim.batch_size": 3,
        "optim.steps": 4,
        "optim.lr": 1e-4,
        "optim.warmup_steps": 1,
        "data.candidates_per_query": 3,
        "output_dir": str(out),
        "checkpoint_every": 3,
        "keep_last": 3,
        "progress": False,
        "losses": [{"name": "kl"}, {"name": "infonce", "weight": 0.1}],
    }
    base.update(overrides)
    return load_config(None, base)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_lists):
    """4 steps of KL + 0.1 InfoNCE, a checkpoint after step 3; the run other tests compare with."""
    out = tmp_path_factory.mktemp("uninterrupted")
    teacher = {"fingerprint": "fake-lexical-0", "name": "fake lexical teacher (tests only)"}
    trainer = Trainer(_config(out), lists=tiny_lists, teacher=teacher)
    trainer.initial_state = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    trainer.initial_loss = _list_loss(trainer.student, tiny_lists)  # eval mode: draws no random numbers
    return trainer, trainer.train()


def _list_loss(student, lists):
    """Listwise KL of ``student`` on every list (top-3 negatives, eval mode): a fixed objective."""
    from distilir.losses import ListwiseKLLoss

    batch = collate([(x, select_candidates(x, 3, negatives="top")) for x in lists], 3)
    student.eval()
    with torch.no_grad():
        out = student.forward_scores(batch.queries, batch.docs, batch.mask)
        return float(ListwiseKLLoss()(out.scores, batch.teacher_scores, out.mask))


def test_short_run_lowers_the_training_loss(uninterrupted, tiny_lists):
    trainer, result = uninterrupted
    before = trainer.initial_loss
    after = _list_loss(trainer.student, tiny_lists)
    assert after < 0.9 * before, (before, after)
    assert result.steps == 4 and len(result.losses) == 4 and all(math.isfinite(x) for x in result.losses)


def test_combined_loss_is_kl_plus_a_tenth_of_infonce(uninterrupted):
    _, result = uninterrupted
    for record in result.history:
        parts = record["components"]
        assert set(parts) == {"kl", "infonce"}
        assert record["loss"] == pytest.approx(parts["kl"] + 0.1 * parts["infonce"], rel=1e-5)
    # linear warm-up over 1 step, then linear decay to 0 at step 4
    assert [r["lr"] for r in result.history] == pytest.approx([0.0, 1e-4, 2e-4 / 3, 1e-4 / 3])


def test_resume_after_interruption_equals_the_uninterrupted_run(uninterrupted, tiny_lists, tmp_path):
    reference, ref_result = uninterrupted

    class Interrupted(Exception):
        pass

    def interrupt_after_step_3(trainer, record):  # the step-3 checkpoint is already on disk here
        if record["step"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(_config(tmp_path), lists=tiny_lists, callbacks=[interrupt_after_step_3]).train()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000003"
    assert not (tmp_path / "student").exists()
    with pytest.raises(TrainingError, match="resume"):  # a fresh start must not overwrite the run
        Trainer(_config(tmp_path), lists=tiny_lists).train()

    resumed = Trainer(_config(tmp_path), lists=tiny_lists)
    result = resumed.train(resume="auto")
    assert result.losses == ref_result.losses  # identical loss curve, not just close
    assert [h["components"] for h in result.history] == [h["components"] for h in ref_result.history]
    ref_state, state = reference.module.state_dict(), resumed.module.state_dict()
    assert ref_state.keys() == state.keys()
    for key in ref_state:
        torch.testing.assert_close(state[key], ref_state[key], atol=1e-5, rtol=0)
    # the weights did move, so the comparison above is not trivially true
    fresh = reference.initial_state
    assert max(float((fresh[k] - ref_state[k]).abs().max()) for k in ref_state) > 1e-4
    assert result.manifest["resumed_from"][0]["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines if x["type"] == "train"] == ref_result.losses  # no duplicated steps


def test_resume_refuses_a_changed_trajectory(uninterrupted, tiny_lists, tmp_path):
    trainer, _ = uninterrupted
    shutil.copytree(trainer.checkpoint_root, tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="other student/loss/data/optimisation settings"):
        Trainer(_config(tmp_path, **{"optim.lr": 5e-5}), lists=tiny_lists).train(resume="auto")


def test_saved_student_is_a_plain_sentence_transformers_model_with_a_manifest(uninterrupted, tiny_lists):
    from sentence_transformers import SentenceTransformer

    from distilir.students import load_student

    trainer, result = uninterrupted
    folder = result.student_dir
    assert folder == trainer.output_dir / "student"
    model = SentenceTransformer(str(folder), device="cpu")
    texts = [x.query for x in tiny_lists[:3]]
    trainer.student.eval()
    with torch.no_grad():
        expected = trainer.student.encode_queries(texts)
    got = model.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == result.manifest
    missing = [k for k in REQUIRED_MANIFEST_FIELDS if k not in manifest]
    assert not missing, missing
    assert manifest["format"] == "distilir-student/1" and manifest["kind"] == "bi-encoder"
    assert manifest["teacher"]["fingerprint"] == "fake-lexical-0"
    assert [e["name"] for e in manifest["losses"]["losses"]] == ["kl", "infonce"]
    assert manifest["steps"] == 4 and manifest["seed"] == 42 and manifest["data"]["lists"] == len(tiny_lists)
    assert manifest["metrics"]["final_train_loss"] == result.losses[-1]
    assert manifest["time"]["train_seconds"] > 0 and manifest["producer"]["version"]
    assert load_student(folder).kind == "bi-encoder"  # the students package reads it too
    assert (trainer.output_dir / "config.yaml").is_file()
    lines = [json.loads(x) for x in (trainer.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines if x["type"] == "train"] == result.losses


def test_each_student_kind_trains_for_two_steps(tiny_lists, tmp_path, data_dir):
    """SPLADE (FLOPS term with its quadratic warm-up) and a cross-encoder, each evaluated by reranking."""
    from sentence_transformers import CrossEncoder, SparseEncoder

    # candidates to rerank: 4 SciFact test queries, their judged documents plus 4 others
    from distilir.data import load_dataset
    from distilir.data.trec import write_run

    ds = load_dataset("scifact", data_dir=data_dir)
    qrels = ds.qrels("test")
    others = sorted(ds.corpus())[:4]
    run = {q: {d: 1.0 for d in list(qrels[q]) + others} for q in sorted(qrels)[:4]}
    write_run(run, tmp_path / "cands.trec")
    evaluation = {
        "eval.dataset": "scifact",
        "eval.split": "test",
        "eval.candidates": str(tmp_path / "cands.trec"),
        "eval.max_queries": 4,
        "eval.depth": 10,  # nDCG@10 needs lists of 10 (the files' lists are shorter: what BM25 would give)
        "eval.k": 10,
    }

    splade = Trainer(
        _config(
            tmp_path / "splade",
            **{
                "student.kind": "splade",
                "student.model": "splade-tiny",
                "student.max_length": 64,
                "optim.steps": 2,
                "losses": [{"name": "margin_mse"}],
                "flops.query_weight": 1e-3,
                "flops.document_weight": 2e-3,
                "flops.warmup_steps": 2,
                **evaluation,
            },
        ),
        lists=tiny_lists,
    )
    result = splade.train()
    ramp = [(t / 2) ** 2 for t in range(2)]  # lambda * min(1, t / T)^2 at steps t = 0, 1
    got = [w for r in result.history for w in r["flops_weights"]]
    assert got == pytest.approx([w for f in ramp for w in (1e-3 * f, 2e-3 * f)])
    for r in result.history:
        c, (wq, wd) = r["components"], r["flops_weights"]
        assert c["flops_query"] > 0 and c["flops_doc"] > 0
        assert r["loss"] == pytest.approx(
            c["margin-mse"] + wq * c["flops_query"] + wd * c["flops_doc"], rel=1e-5
        )
    assert set(result.final_metrics) == {"nDCG@10", "RR@10", "R@10"}
    sparse = SparseEncoder(str(result.student_dir), device="cpu").encode(
        ["vitamin d deficiency"], convert_to_tensor=True
    )
    assert sparse.shape[-1] > 10_000 and 0 < int((sparse.to_dense() != 0).sum()) < 5_000

    cross = Trainer(
        _config(
            tmp_path / "cross",
            **{
                "student.kind": "cross_encoder",
                "student.max_length": 64,
                "optim.steps": 2,
                "losses": [{"name": "kl"}],
                **evaluation,
            },
        ),
        lists=tiny_lists,
    )
    before = {k: v.clone() for k, v in cross.module.state_dict().items()}
    result = cross.train()
    assert len(result.history) == 2 and all(math.isfinite(x) for x in result.losses)
    assert any(not torch.equal(before[k], v) for k, v in cross.module.state_dict().items())
    assert 0.0 <= result.final_metrics["nDCG@10"] <= 1.0
    model = CrossEncoder(str(result.student_dir), device="cpu")
    pairs = [(tiny_lists[0].query, d) for d in tiny_lists[0].docs[:3]]
    cross.student.eval()
    with torch.no_grad():
        expected = cross.student.score([tiny_lists[0].query], [list(tiny_lists[0].docs[:3])])[0]
    got = torch.as_tensor(model.predict(pairs, activation_fn=torch.nn.Identity()))
    torch.testing.assert_close(got.float(), expected.float(), atol=1e-4, rtol=1e-4)


class _Stop(Exception):
    pass


def test_evaluating_on_training_queries_warns_before_the_first_step(tiny_lists, scifact, tmp_path, data_dir):
    """The trainer prepares its evaluation before training, so an evaluated split that holds training
    queries is warned about before step 1, not after the run."""
    from distilir.data.trec import write_run

    qrels = scifact.qrels("train")
    qids = [x.qid for x in tiny_lists[:3]]
    write_run({q: {d: 1.0 for d in list(qrels[q]) + ["4983"]} for q in qids}, tmp_path / "c.trec")
    evaluation = {
        "eval.dataset": "scifact",
        "eval.split": "train",
        "eval.candidates": str(tmp_path / "c.trec"),
    }
    config = _config(tmp_path / "run", **{"data.dataset": "scifact", **evaluation})
    at_step_1: list[str] = []

    def stop(trainer, record):
        at_step_1.extend(str(w.message) for w in caught)
        raise _Stop

    trainer = Trainer(config, lists=tiny_lists, data_dir=data_dir, callbacks=[stop])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(_Stop):
        warnings.simplefilter("always")
        trainer.train()
    assert any("3 of the 3 evaluated queries of scifact split 'train' are training" in m for m in at_step_1)
    assert trainer.evaluator.describe()["training_queries_evaluated"] == 3


def test_progress_false_also_silences_the_model_loading_bars(tiny_lists, tmp_path, capfd):
    """transformers draws its own "Loading weights" bar; ``progress: false`` (--quiet) hides it too."""
    capfd.readouterr()
    Trainer(_config(tmp_path / "loud", progress=True), lists=tiny_lists)
    assert "Loading weights" in capfd.readouterr().err
    Trainer(_config(tmp_path / "quiet"), lists=tiny_lists)  # progress: false
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
