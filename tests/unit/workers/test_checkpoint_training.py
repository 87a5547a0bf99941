"""Checkpoints in train_trial: a resumed run continues exactly where the interrupted one
stopped (weights, optimizer moments, schedule, data order, dropout's random state), a fork
changes hyperparameters but keeps the weights, and the final model can be evaluated on the
test set from its checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from workers.training import (
    CheckpointError,
    evaluate_checkpoint,
    evaluate_test,
    train_trial,
)
from workers.training.checkpoint import unpack

Reports = list[tuple[int, dict[str, float]]]

# Adam (moments), dropout (random state), batch norm (running statistics), a decaying lr:
# each is state a resumed run must get back exactly.
PARAMS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 0.01,
    "dropout": 0.2,
    "batch_norm": True,
    "hidden_units": 16,
    "batch_size": 32,
    "lr_decay": "inverse",
    "lr_decay_rate": 0.5,
}


class MemoryCheckpoints:
    """Checkpoints kept in a dict, as the artifact store keeps them on the server."""

    def __init__(self, start: bytes | None = None) -> None:
        self.saved: dict[int, bytes] = {}
        self.start = start

    def load(self) -> bytes | None:
        return self.start

    def save(self, step: int, data: bytes) -> None:
        self.saved[step] = data


def recorder(reports: Reports, stop_at: int | None = None) -> Any:
    def report(epoch: int, metrics: dict[str, float]) -> bool:
        reports.append((epoch, metrics))
        return epoch == stop_at

    return report


@pytest.fixture
def task(blobs_npz: Path) -> dict[str, Any]:
    return {
        "trainer": "mlp_classifier",
        "dataset": "file",
        "data_path": str(blobs_npz),
        "epochs": 5,
    }


def test_a_resumed_run_reports_what_the_uninterrupted_run_did(task: dict[str, Any]) -> None:
    whole: Reports = []
    train_trial(PARAMS, task, recorder(whole), seed=3, checkpoints=MemoryCheckpoints())

    first = MemoryCheckpoints()
    interrupted = train_trial(PARAMS, task, recorder([], stop_at=2), seed=3, checkpoints=first)
    assert interrupted.stopped_early and sorted(first.saved) == [1, 2]

    resumed: Reports = []
    result = train_trial(
        PARAMS, task, recorder(resumed), seed=3, checkpoints=MemoryCheckpoints(first.saved[2])
    )
    assert result.resumed_from == 2 and result.epochs_run == 5
    assert [e for e, _ in resumed] == [3, 4, 5]
    for (epoch, got), (_, expected) in zip(resumed, whole[2:], strict=True):
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-7), f"epoch {epoch}"


def test_checkpoints_every_n_epochs_and_at_the_end(task: dict[str, Any]) -> None:
    every_two = MemoryCheckpoints()
    train_trial(PARAMS, {**task, "checkpoint_every": 2}, recorder([]), checkpoints=every_two)
    assert sorted(every_two.saved) == [2, 4, 5]

    stopped = MemoryCheckpoints()
    train_trial(
        PARAMS,
        {**task, "checkpoint_every": 2},
        recorder([], stop_at=3),
        checkpoints=stopped,
    )
    assert sorted(stopped.saved) == [2, 3]  # a stop saves where it stopped, for a fork

    never = MemoryCheckpoints()
    train_trial(PARAMS, {**task, "checkpoint_every": 0}, recorder([]), checkpoints=never)
    assert never.saved == {}


def test_the_checkpoint_holds_what_resuming_needs(task: dict[str, Any]) -> None:
    kept = MemoryCheckpoints()
    train_trial(PARAMS, {**task, "epochs": 2}, recorder([]), seed=0, checkpoints=kept)
    state = unpack(kept.saved[2])
    assert state["epoch"] == 2 and state["lr_schedule"] == {"epoch": 2}
    assert state["optimizer_name"] == "adam" and state["params"] == PARAMS
    assert state["optimizer"]["state"]  # Adam's moments
    assert any("running_mean" in name for name in state["model"])  # batch norm statistics
    assert {"torch", "data_order"} <= set(state["rng"])
    assert state["seconds"] > 0


def test_a_fork_trains_on_with_its_own_learning_rate(task: dict[str, Any]) -> None:
    parent = MemoryCheckpoints()
    train_trial(PARAMS, task, recorder([], stop_at=2), seed=0, checkpoints=parent)
    fork: Reports = []
    lower = {**PARAMS, "lr": 0.001, "lr_decay": "none"}
    train_trial(lower, task, recorder(fork), seed=7, checkpoints=MemoryCheckpoints(parent.saved[2]))
    assert [e for e, _ in fork] == [3, 4, 5]
    assert all(m["lr"] == 0.001 for _, m in fork)


def test_a_fork_to_another_optimizer_keeps_the_weights_only(task: dict[str, Any]) -> None:
    adam = {**PARAMS, "batch_norm": False}  # batch norm's statistics move whatever the lr
    parent = MemoryCheckpoints()
    parent_reports: Reports = []
    train_trial(adam, task, recorder(parent_reports, stop_at=3), seed=0, checkpoints=parent)
    fork: Reports = []
    sgd = {**adam, "optimizer": "sgd", "lr": 1e-9}  # too small to move the weights
    train_trial(sgd, task, recorder(fork), seed=0, checkpoints=MemoryCheckpoints(parent.saved[3]))
    assert fork[0][0] == 4
    # Adam's moments are not SGD's: the fork starts a fresh optimizer on the parent's weights,
    # which its first epoch barely moves, so it scores what the parent scored.
    assert fork[0][1]["dev_loss"] == pytest.approx(parent_reports[-1][1]["dev_loss"], rel=1e-4)


def test_a_network_of_another_shape_cannot_continue(task: dict[str, Any]) -> None:
    parent = MemoryCheckpoints()
    train_trial(PARAMS, {**task, "epochs": 1}, recorder([]), checkpoints=parent)
    wider = {**PARAMS, "hidden_units": 32}
    with pytest.raises(CheckpointError, match="same shape"):
        train_trial(wider, task, recorder([]), checkpoints=MemoryCheckpoints(parent.saved[1]))


def test_a_checkpoint_of_the_last_epoch_ends_training_at_once(task: dict[str, Any]) -> None:
    kept = MemoryCheckpoints()
    first = train_trial(PARAMS, task, recorder([]), seed=0, checkpoints=kept)
    reports: Reports = []
    again = train_trial(
        PARAMS, task, recorder(reports), seed=0, checkpoints=MemoryCheckpoints(kept.saved[5])
    )
    assert reports == [] and again.epochs_run == 5 and not again.stopped_early
    assert again.metrics["dev_loss"] == pytest.approx(first.metrics["dev_loss"])


def test_the_final_model_is_evaluated_on_test_from_its_checkpoint(task: dict[str, Any]) -> None:
    kept = MemoryCheckpoints()
    result = train_trial(PARAMS, task, recorder([]), seed=0, checkpoints=kept)
    assert result.model is not None
    from_checkpoint = evaluate_checkpoint(PARAMS, task, kept.saved[5], epoch=5)
    assert from_checkpoint == pytest.approx(evaluate_test(result.model, task))
    assert {"test_loss", "test_accuracy", "test_error", "test_f1"} <= set(from_checkpoint)
    with pytest.raises(CheckpointError, match="epoch 4"):
        evaluate_checkpoint(PARAMS, task, kept.saved[4], epoch=5)


def test_bytes_that_are_not_a_checkpoint_are_refused() -> None:
    with pytest.raises(CheckpointError, match="cannot be read"):
        unpack(b"not a checkpoint")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_on_a_gpu_a_resumed_run_matches_and_its_checkpoint_moves_to_the_cpu(
    task: dict[str, Any],
) -> None:
    # No dropout: the CPU continuation below draws masks from another generator than CUDA's.
    gpu = {**PARAMS, "dropout": 0.0}
    whole: Reports = []
    train_trial(gpu, task, recorder(whole), "cuda", seed=3, checkpoints=MemoryCheckpoints())
    first = MemoryCheckpoints()
    train_trial(gpu, task, recorder([], stop_at=2), "cuda", seed=3, checkpoints=first)
    assert "cuda" in unpack(first.saved[2])["rng"]
    resumed: Reports = []
    kept = MemoryCheckpoints(first.saved[2])
    train_trial(gpu, task, recorder(resumed), "cuda", seed=3, checkpoints=kept)
    for (_, got), (_, expected) in zip(resumed, whole[2:], strict=True):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    on_cpu: Reports = []
    train_trial(gpu, task, recorder(on_cpu), "cpu", seed=3, checkpoints=kept)
    assert [e for e, _ in on_cpu] == [3, 4, 5]
    # The same weights and data order; only float rounding differs between the devices.
    assert on_cpu[0][1]["dev_loss"] == pytest.approx(resumed[0][1]["dev_loss"], rel=1e-2)
