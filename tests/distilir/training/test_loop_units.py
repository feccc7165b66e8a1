"""Properties of the training loop checked with a FAKE tiny student (a hashed bag-of-words encoder with
dropout, a few thousand parameters) so that many steps cost milliseconds. The real students are
exercised in test_trainer.py; here only the loop's bookkeeping is under test: gradient accumulation,
exact resume with stateful losses (adaptive TAID), epochs and schedules."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

from distilir.students.base import BaseStudent, StudentOutput, layout_batch
from distilir.training import Trainer, TrainingList, load_config


class FakeBagStudent(BaseStudent):
    """FAKE student for loop tests only: mean of hashed word embeddings, dropout, dot-product scores."""

    kind = "bi-encoder"

    def __init__(self, dim: int = 16, buckets: int = 257, dropout: float = 0.1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.buckets = buckets

    def _encode(self, texts):
        ids = [[zlib.crc32(w.encode()) % self.buckets for w in (t.lower().split() or [""])] for t in texts]
        flat = torch.tensor([i for row in ids for i in row])
        offsets = torch.tensor([0] + [len(r) for r in ids[:-1]]).cumsum(0)
        return self.proj(self.drop(self.emb(flat, offsets)))

    def forward_scores(self, queries, docs_lists, mask=None):
        layout = layout_batch(queries, docs_lists, mask)
        q, d = self._encode(layout.queries), self._encode(layout.flat_docs)
        in_batch = q @ d.T
        own = in_batch[layout.rows, torch.arange(len(layout.flat_docs))]
        return StudentOutput(
            scores=layout.scatter(own),
            mask=layout.mask,
            in_batch_scores=in_batch,
            positive_idx=layout.positive_index(),
            regularization_loss=own.new_zeros(()),
        )

    def save(self, path):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(path) / "weights.pt")
        return Path(path)

    def get_config_dict(self):
        return {"fake": True}


def _lists(n=10):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    out = []
    for i in range(n):
        docs = [" ".join(words[(i + j + k) % len(words)] for k in range(3)) for j in range(5)]
        out.append(
            TrainingList(
                f"q{i:02d}",
                " ".join(words[i % 12 : i % 12 + 2]),
                tuple(f"d{i}-{j}" for j in range(5)),
                tuple(docs),
                tuple(float((i * 7 + j * 3) % 5) for j in range(5)),
            )
        )
    return out


def _config(out, **overrides):
    base = {
        "output_dir": str(out),
        "progress": False,
        "optim.batch_size": 4,
        "optim.steps": 6,
        "optim.lr": 1e-2,
        "data.candidates_per_query": 4,
        "optim.warmup_steps": 2,
        "checkpoint_every": 2,
        "keep_last": 5,
    }
    base.update(overrides)
    return load_config(None, base)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    """Without dropout and with per-query losses, 2 micro-batches of 2 give the step a batch of 4 gives."""
    common = {"data.negatives": "top", "losses": [{"name": "kl"}, {"name": "margin_mse"}], "optim.steps": 3}
    big = Trainer(_config(tmp_path / "a", **common), student=FakeBagStudent(dropout=0.0), lists=_lists())
    small = Trainer(
        _config(tmp_path / "b", **common, **{"optim.batch_size": 2, "optim.grad_accumulation": 2}),
        student=FakeBagStudent(dropout=0.0),
        lists=_lists(),
    )
    ra, rb = big.train(), small.train()
    assert ra.losses == pytest.approx(rb.losses, rel=1e-5)
    for key, value in big.module.state_dict().items():
        torch.testing.assert_close(small.module.state_dict()[key], value, atol=1e-6, rtol=1e-5)
    # 4 lists per step out of 10: step k starts at epoch 0.4 * (k - 1)
    assert [r["epoch"] for r in ra.history] == pytest.approx([0.0, 0.4, 0.8])


@pytest.mark.parametrize(
    "losses",
    [
        [{"name": "taid", "params": {"adaptive": True, "t_start": 0.2, "alpha": 0.2}}],
        [{"name": "kl"}, {"name": "infonce", "weight": 0.1}],
    ],
)
def test_resume_from_every_checkpoint_reproduces_the_run(tmp_path, losses):
    """Dropout, random negatives, epochs wrapping mid-batch and a stateful loss: resuming from any
    checkpoint gives the same loss curve and weights as the uninterrupted run."""
    ref = Trainer(_config(tmp_path / "ref", losses=losses), student=FakeBagStudent(), lists=_lists())
    ref_result = ref.train()
    assert len(set(ref_result.losses)) == 6
    for stop in (2, 4):
        out = tmp_path / f"stop{stop}"

        def interrupt(trainer, record, stop=stop):
            if record["step"] == stop:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            Trainer(
                _config(out, losses=losses), student=FakeBagStudent(), lists=_lists(), callbacks=[interrupt]
            ).train()
        resumed = Trainer(_config(out, losses=losses), student=FakeBagStudent(), lists=_lists())
        result = resumed.train(resume=out / "checkpoints" / f"step-{stop:08d}")
        assert result.losses == ref_result.losses
        for key, value in ref.module.state_dict().items():
            assert torch.equal(resumed.module.state_dict()[key], value), key
    if losses[0]["name"] == "taid":
        taid = ref.loss_fn.losses[0]
        assert (
            taid.current_t > 0.2 + 5 / 6 * 0.8 - 1e-9
        )  # the adaptive schedule never falls behind the linear floor


def test_epochs_set_the_number_of_steps(tmp_path):
    trainer = Trainer(
        _config(tmp_path, **{"optim.steps": None, "optim.epochs": 2.0, "optim.batch_size": 3}),
        student=FakeBagStudent(),
        lists=_lists(),
    )
    assert trainer.total_steps == 7  # ceil(2 * 10 / 3)
    result = trainer.train()
    assert result.steps == 7 and result.manifest["epochs"] == pytest.approx(2.1)
    lrs = [r["lr"] for r in result.history]
    assert lrs[:3] == pytest.approx([0.0, 5e-3, 1e-2]) and lrs[-1] == pytest.approx(
        1e-2 / 5
    )  # the rate used by the last step


class FakeHeadStudent(FakeBagStudent):
    """FAKE student whose projection plays a freshly initialised head (what a cross-encoder built from
    a bi-encoder checkpoint reports through ``new_parameters``)."""

    def new_parameters(self):
        return list(self.proj.parameters())


def test_head_lr_gives_the_new_head_its_own_rate_under_the_same_schedule(tmp_path):
    from distilir.training.config import ConfigError

    config = _config(tmp_path / "head", **{"optim.head_lr": 0.5, "optim.steps": 4})
    trainer = Trainer(config, student=FakeHeadStudent(), lists=_lists())
    head = {id(p) for p in trainer.student.new_parameters()}
    rates = {}
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["initial_lr"]
    assert {rates[i] for i in head} == {0.5}
    assert {r for i, r in rates.items() if i not in head} == {1e-2}
    assert len(rates) == sum(1 for _ in trainer.module.parameters())
    before = trainer.student.proj.weight.detach().clone()
    result = trainer.train()
    # the logged rate is the body's; both groups follow the warm-up / decay schedule by the same factor
    assert [r["lr"] for r in result.history] == pytest.approx([0.0, 5e-3, 1e-2, 5e-3])
    factors = [g["lr"] / g["initial_lr"] for g in trainer.optimizer.param_groups]
    assert max(factors) == pytest.approx(min(factors))
    assert not torch.equal(before, trainer.student.proj.weight)
    with pytest.raises(ConfigError, match="no freshly initialised parameters"):
        Trainer(
            _config(tmp_path / "none", **{"optim.head_lr": 0.5}), student=FakeBagStudent(), lists=_lists()
        )
    with pytest.raises(ConfigError, match="optim.head_lr"):
        _config(tmp_path / "bad", **{"optim.head_lr": -1.0})


def test_non_finite_loss_stops_with_a_hint(tmp_path):
    from distilir.training import TrainingError

    bad = _lists()
    bad[0] = TrainingList("q00", bad[0].query, bad[0].doc_ids, bad[0].docs, (1e30, -1e30, 0.0, 0.0, 0.0))
    trainer = Trainer(
        _config(tmp_path, losses=[{"name": "margin_mse"}], **{"optim.batch_size": 10}),
        student=FakeBagStudent(),
        lists=bad,
    )
    with pytest.raises(TrainingError, match="Lower optim.lr"):
        trainer.train()


def test_evaluating_during_training_does_not_change_the_run(tmp_path, scifact):
    """Dev evaluation every 2 steps (reranking real SciFact candidates with the fake student) leaves the
    loss curve and the weights exactly as without evaluation."""
    from distilir.data.trec import write_run

    qrels = scifact.qrels("test")
    write_run(
        {q: {d: 1.0 for d in list(qrels[q]) + ["4983", "5836"]} for q in sorted(qrels)[:5]}, tmp_path / "c"
    )
    evaluation = {"eval.dataset": "scifact", "eval.candidates": str(tmp_path / "c"), "eval.every_n_steps": 2}
    plain = Trainer(_config(tmp_path / "plain"), student=FakeBagStudent(), lists=_lists())
    evaluated = Trainer(_config(tmp_path / "eval", **evaluation), student=FakeBagStudent(), lists=_lists())
    a, b = plain.train(), evaluated.train()
    assert [e["step"] for e in b.evaluations] == [2, 4, 6]
    assert all(set(e["metrics"]) == {"nDCG@10", "RR@10", "R@100"} for e in b.evaluations)
    assert b.manifest["metrics"]["final"] == b.evaluations[-1]["metrics"]
    assert a.losses == b.losses
    for key, value in plain.module.state_dict().items():
        assert torch.equal(evaluated.module.state_dict()[key], value)


def test_teacher_scale_equals_scaling_the_stored_scores(tmp_path):
    scaled = [
        TrainingList(x.qid, x.query, x.doc_ids, x.docs, tuple(0.25 * s for s in x.scores)) for x in _lists()
    ]
    common = {"losses": [{"name": "margin_mse"}], "optim.steps": 3}
    a = Trainer(
        _config(tmp_path / "a", **common, **{"data.teacher_scale": 0.25}),
        student=FakeBagStudent(),
        lists=_lists(),
    ).train()
    b = Trainer(_config(tmp_path / "b", **common), student=FakeBagStudent(), lists=scaled).train()
    assert a.losses == pytest.approx(b.losses, rel=1e-6)
    assert a.manifest["data"]["teacher_scale"] == 0.25
