"""A replayed trial's trainer runs once per stretch of its schedule, with the stretch's
hyperparameters and its epochs cut at the stretch's end, and stops at the first run that
ends early; the built-in trainer, resuming between stretches, reports each epoch at its
stretch's learning rate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.schedule import follow_schedule
from workers.training import train_trial

SCHEDULE = [
    {"first_epoch": 1, "params": {"lr": 0.1}},
    {"first_epoch": 3, "params": {"lr": 0.08}},
    {"first_epoch": 5, "params": {"lr": 0.096}},
]


@dataclass
class Result:
    stopped_early: bool
    epochs_run: int


class Trainer:
    """Records each run; stops early at ``stop_at`` (as a pruned or stopped trial does)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.runs: list[tuple[dict[str, Any], int, dict[str, Any]]] = []
        self.stop_at = stop_at

    def __call__(
        self, params: dict[str, Any], task: dict[str, Any], report: Any, **kw: Any
    ) -> Result:
        self.runs.append((params, task["epochs"], kw))
        epochs = task["epochs"]
        if self.stop_at is not None and self.stop_at <= epochs:
            return Result(True, self.stop_at)
        return Result(False, epochs)


def test_each_stretch_runs_with_its_params_up_to_its_last_epoch() -> None:
    train = Trainer()
    task = {"trainer": "custom", "epochs": 8}
    result = follow_schedule(train, SCHEDULE, {"lr": 0.096, "units": 64}, task, print, seed=3)
    assert [(p, e) for p, e, _ in train.runs] == [
        ({"lr": 0.1, "units": 64}, 2),
        ({"lr": 0.08, "units": 64}, 4),
        ({"lr": 0.096, "units": 64}, 8),
    ]
    assert all(kw == {"seed": 3} for _, _, kw in train.runs)
    assert result == Result(False, 8)
    assert task["epochs"] == 8  # the claim's task is left as it was


def test_a_run_that_ends_early_ends_the_replay() -> None:
    train = Trainer(stop_at=3)
    result = follow_schedule(train, SCHEDULE, {"lr": 0.096}, {"epochs": 8}, print)
    assert [e for _, e, _ in train.runs] == [2, 4]
    assert result == Result(True, 3)


@dataclass
class Latest:
    """A trial's checkpoints as the server keeps them: the latest one is what a run loads."""

    saved: dict[int, bytes] = field(default_factory=dict)

    def load(self) -> bytes | None:
        return self.saved[max(self.saved)] if self.saved else None

    def save(self, step: int, data: bytes) -> None:
        self.saved[step] = data


def test_a_built_in_trainer_trains_each_epoch_with_its_stretchs_learning_rate(
    blobs_npz: Path,
) -> None:
    task = {"trainer": "mlp_classifier", "dataset": "file", "data_path": str(blobs_npz)}
    reports: list[tuple[int, float]] = []

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        reports.append((epoch, metrics["lr"]))
        return False

    params = {"hidden_units": 16, "batch_size": 32, "optimizer": "momentum", "lr": 0.096}
    result = follow_schedule(
        train_trial, SCHEDULE, params, {**task, "epochs": 6}, report, checkpoints=Latest()
    )
    assert reports == [(1, 0.1), (2, 0.1), (3, 0.08), (4, 0.08), (5, 0.096), (6, 0.096)]
    assert result.epochs_run == 6 and not result.stopped_early
