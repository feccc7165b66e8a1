"""The public surface of distilir.training is what we mean to export, and every name resolves."""

from __future__ import annotations

import distilir.training as training

EXPECTED = {
    "MANIFEST_FORMAT",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DevEvaluator",
    "DistributedContext",
    "EvalConfig",
    "FlopsConfig",
    "ListBatch",
    "ListSampler",
    "LossSpec",
    "OptimConfig",
    "StudentConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingList",
    "add_train_parser",
    "gather_with_grad",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_training_lists",
    "read_lists_jsonl",
    "train",
    "write_lists_jsonl",
}


def test_all_is_the_intended_surface():
    assert set(training.__all__) == EXPECTED
    assert len(training.__all__) == len(EXPECTED)
    for name in training.__all__:
        assert getattr(training, name) is not None


def test_errors_are_value_errors_so_the_cli_reports_them_without_a_traceback():
    for cls in (training.ConfigError, training.DataError, training.CheckpointError, training.TrainingError):
        assert issubclass(cls, ValueError)
