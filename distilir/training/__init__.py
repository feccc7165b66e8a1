"""Training: distil teacher scores into a student, resumably and reproducibly.

    from distilir.training import Trainer, load_config
    config = load_config("train.yaml", ["--optim.lr", "2e-5"])
    result = Trainer(config).train(resume="auto")     # -> result.student_dir (a sentence-transformers folder)

Every config key: ``docs/training-config.md`` (generated from :mod:`distilir.training.config`; a
commented example is ``docs/examples/run.yaml``); :mod:`distilir.training.trainer` for the loop and
the run folder, :mod:`distilir.training.checkpoint` for what a checkpoint holds.
"""

from distilir.training.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from distilir.training.cli import add_train_parser
from distilir.training.config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    FlopsConfig,
    LossSpec,
    OptimConfig,
    StudentConfig,
    TrainConfig,
    load_config,
)
from distilir.training.data import (
    DataError,
    ListBatch,
    ListSampler,
    TrainingList,
    read_lists_jsonl,
    write_lists_jsonl,
)
from distilir.training.dev_eval import DevEvaluator
from distilir.training.distributed import DistributedContext, gather_with_grad
from distilir.training.lists import load_training_lists
from distilir.training.trainer import MANIFEST_FORMAT, Trainer, TrainingError, TrainResult, train

__all__ = [
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
]
