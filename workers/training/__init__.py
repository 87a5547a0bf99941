"""The PyTorch side of a worker: built-in trainers that train a real model on real data and
return its metrics. The claim loop needs only :func:`train_trial`."""

from workers.outcomes import TrainingDiverged
from workers.training.checkpoint import CheckpointError, Checkpoints
from workers.training.hyperparameters import HyperparameterError
from workers.training.run import (
    TrainingResult,
    TrainingStopped,
    evaluate_checkpoint,
    evaluate_test,
    train_and_evaluate_test,
    train_trial,
)

__all__ = [
    "CheckpointError",
    "Checkpoints",
    "HyperparameterError",
    "TrainingDiverged",
    "TrainingResult",
    "TrainingStopped",
    "evaluate_checkpoint",
    "evaluate_test",
    "train_and_evaluate_test",
    "train_trial",
]
