"""train_trial end to end: learning, per-epoch reports, stopping, seeds, final metrics, and
the test set kept out of it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_fscore_support

from hpsearch import tasks
from workers.training import (
    TrainingDiverged,
    TrainingStopped,
    evaluate_test,
    train_and_evaluate_test,
    train_trial,
)
from workers.training.metrics import macro_scores

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]
Reports = list[tuple[int, dict[str, float]]]

DIGITS_MLP: dict[str, Any] = {"trainer": "mlp_classifier", "dataset": "digits", "epochs": 3}


def recorder(
    reports: Reports, stop_at: int | None = None
) -> Callable[[int, dict[str, float]], bool]:
    def report(epoch: int, metrics: dict[str, float]) -> bool:
        reports.append((epoch, metrics))
        return epoch == stop_at

    return report


def test_digits_mlp_learns() -> None:
    task = {**DIGITS_MLP, "epochs": 5}
    result = train_trial({"optimizer": "adam", "lr": 0.01}, task, lambda e, m: False, seed=0)
    assert result.metrics["dev_accuracy"] > 0.85
    assert result.metrics["dev_error"] == pytest.approx(1 - result.metrics["dev_accuracy"])
    assert result.epochs_run == 5 and not result.stopped_early


LEARNING_RATES = {"sgd": 0.05, "momentum": 0.05, "rmsprop": 0.002, "adam": 0.003}


@pytest.mark.parametrize("optimizer", sorted(LEARNING_RATES))
@pytest.mark.parametrize("trainer", ["mlp_classifier", "softmax_regression", "cnn_classifier"])
def test_every_trainer_and_optimizer_lowers_the_loss(
    trainer: str, optimizer: str, blobs_npz: Path
) -> None:
    task = {"trainer": trainer, "dataset": "file", "data_path": str(blobs_npz), "epochs": 4}
    params: dict[str, Any] = {"optimizer": optimizer, "lr": LEARNING_RATES[optimizer]}
    params["batch_size"] = 32
    if trainer == "cnn_classifier":
        params.update(channels=4, hidden_units=16)
    reports: Reports = []
    train_trial(params, task, recorder(reports), seed=1)
    losses = [m["train_loss"] for _, m in reports]
    assert losses[-1] < losses[0]
    assert losses[-1] < math.log(3)  # better than guessing among 3 classes


def test_report_once_per_epoch_with_the_documented_metrics(blobs_npz: Path) -> None:
    task = {
        "trainer": "mlp_classifier",
        "dataset": "file",
        "data_path": str(blobs_npz),
        "epochs": 3,
        "split": {"train": 0.6, "dev": 0.2, "test": 0.2, "train_dev": 0.25},
        "fixed": {"lr_decay": "exponential", "lr_decay_rate": 0.5, "lr": 0.1},
    }
    reports: Reports = []
    result = train_trial({}, task, recorder(reports), seed=0)
    assert [e for e, _ in reports] == [1, 2, 3]
    for _, metrics in reports:
        assert set(metrics) == {
            "lr",
            *(f"{p}_{m}" for p in ("train", "dev", "train_dev") for m in ("loss", "accuracy")),
        }
    assert [m["lr"] for _, m in reports] == pytest.approx([0.1, 0.05, 0.025])
    assert result.metrics["train_dev_error"] == pytest.approx(
        1 - reports[-1][1]["train_dev_accuracy"]
    )
    # The server's catalogue, which checks a study's metrics at submit, says the same.
    assert set(result.metrics) == set(tasks.reported_metrics(task) or ())
    assert set(reports[-1][1]) <= {*tasks.METRICS, *tasks.TRAIN_DEV_METRICS, *tasks.STEP_METRICS}


def test_final_metrics(blobs_npz: Path) -> None:
    reports: Reports = []
    task = {
        "trainer": "mlp_classifier",
        "dataset": "file",
        "data_path": str(blobs_npz),
        "epochs": 2,
    }
    result = train_trial({"layers": 2, "hidden_units": 16}, task, recorder(reports), seed=0)
    m = result.metrics
    assert set(m) == {
        *(f"{p}_{k}" for p in ("train", "dev") for k in ("loss", "accuracy", "error")),
        "dev_precision", "dev_recall", "dev_f1",
        "latency_ms", "n_params", "model_bytes", "train_seconds", "epochs",
    }  # fmt: skip
    assert set(m) == set(tasks.reported_metrics(task) or ())  # the server's catalogue
    assert m["n_params"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert m["model_bytes"] == 4 * m["n_params"]
    assert m["latency_ms"] > 0 and m["train_seconds"] > 0 and m["epochs"] == 2
    assert m["dev_loss"] == reports[-1][1]["dev_loss"]  # the model as last reported
    assert 0 <= m["dev_f1"] <= 1


def test_report_returning_true_stops_training() -> None:
    reports: Reports = []
    result = train_trial({}, {**DIGITS_MLP, "epochs": 5}, recorder(reports, stop_at=2), seed=0)
    assert [e for e, _ in reports] == [1, 2]
    assert result.stopped_early and result.epochs_run == 2 and result.metrics["epochs"] == 2


def test_report_raising_training_stopped_stops_training() -> None:
    def report(epoch: int, metrics: dict[str, float]) -> bool:
        raise TrainingStopped

    result = train_trial({}, DIGITS_MLP, report, seed=0)
    assert result.stopped_early and result.epochs_run == 1
    assert "dev_accuracy" in result.metrics


def test_a_stop_at_the_last_epoch_is_a_normal_end() -> None:
    result = train_trial({}, DIGITS_MLP, recorder([], stop_at=3), seed=0)
    assert not result.stopped_early and result.epochs_run == 3


def _weights(model: torch.nn.Module | None) -> list[torch.Tensor]:
    assert model is not None
    return [p.detach().clone() for p in model.parameters()]


def test_a_seed_reproduces_the_trial_and_leaves_the_callers_rng_alone() -> None:
    params = {"dropout": 0.3, "batch_size": 32}
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    a = train_trial(params, DIGITS_MLP, lambda e, m: False, seed=5)
    assert torch.equal(torch.rand(1), expected_draw)
    b = train_trial(params, DIGITS_MLP, lambda e, m: False, seed=5)
    c = train_trial(params, DIGITS_MLP, lambda e, m: False, seed=6)
    for name in ("train_loss", "dev_loss", "dev_accuracy", "dev_f1"):
        assert a.metrics[name] == b.metrics[name]
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.model), _weights(b.model), strict=True))
    assert a.metrics["dev_loss"] != c.metrics["dev_loss"]
    assert (a.seed, c.seed) == (5, 6)


def test_train_trial_never_reads_the_test_set(tmp_path: Path, make_blobs: Blobs) -> None:
    x, y = make_blobs(90)
    x_test = np.full_like(x[:30], np.nan)  # would poison any loss, statistic or metric it reached
    np.savez(
        tmp_path / "d.npz",
        x_train=x[:60], y_train=y[:60], x_dev=x[60:], y_dev=y[60:], x_test=x_test, y_test=y[:30],
    )  # fmt: skip
    task = {
        "trainer": "softmax_regression",
        "dataset": "file",
        "data_path": str(tmp_path / "d.npz"),
    }
    result = train_trial({}, {**task, "epochs": 2}, lambda e, m: False, seed=0)
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert not any(k.startswith("test_") for k in result.metrics)
    assert result.model is not None
    test = evaluate_test(result.model, task)
    assert math.isnan(test["test_loss"])


def test_evaluate_test_on_the_held_out_split() -> None:
    result = train_and_evaluate_test({"optimizer": "adam", "lr": 0.01}, DIGITS_MLP, seed=0)
    m = result.metrics
    assert {"test_loss", "test_accuracy", "test_error", "test_f1"} <= set(m)
    assert m["test_accuracy"] > 0.85 and m["test_error"] == pytest.approx(1 - m["test_accuracy"])
    assert m["dev_accuracy"] > 0.85


def test_divergence_is_an_error_not_a_number() -> None:
    reports: Reports = []
    with pytest.raises(TrainingDiverged, match="lr=1e\\+06"):
        train_trial({"optimizer": "sgd", "lr": 1e6}, DIGITS_MLP, recorder(reports), seed=0)
    assert all(math.isfinite(v) for _, m in reports for v in m.values())


def test_errors_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"optimizer='adamw'.*'sgd', 'momentum'"):
        train_trial({"optimizer": "adamw"}, DIGITS_MLP, lambda e, m: False)
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        train_trial(
            {}, {**DIGITS_MLP, "dataset": "file", "data_path": str(missing)}, lambda e, m: False
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40))
def test_macro_scores_match_scikit_learn(pairs: list[tuple[int, int]]) -> None:
    y_true = torch.tensor([t for t, _ in pairs])
    y_pred = torch.tensor([p for _, p in pairs])
    ours = macro_scores(y_true, y_pred)
    p, r, f, _ = precision_recall_fscore_support(
        y_true.numpy(), y_pred.numpy(), average="macro", zero_division=0
    )
    assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx((p, r, f))
