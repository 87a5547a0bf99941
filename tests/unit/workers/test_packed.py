"""train_packed: K trials as one packed model give each trial what train_trial gives it
(same seeds, same data order, per-epoch reports and final metrics, up to float rounding), and
one trial's stop, failure or bad hyperparameter leaves the others untouched."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import scipy.stats
import torch
from torch import nn

from hpsearch.spec import TaskSpec
from workers.training import HyperparameterError, TrainingDiverged, TrainingStopped, train_trial
from workers.training.metrics import evaluate
from workers.training.packed import Outcome, PackedTrialSpec, PackMismatch, train_packed
from workers.training.packed_layers import PackedNetwork
from workers.training.run import TrainingResult, _splits

Reports = list[tuple[int, dict[str, float]]]
Report = Callable[[int, dict[str, float]], bool]

DIGITS_MLP: dict[str, Any] = {"trainer": "mlp_classifier", "dataset": "digits", "epochs": 3}
N_DEV = 360  # digits' dev split: 0.2 of 1797


# A trial's metrics are sums and means over thousands of float32 operations done in another
# order (one bmm per layer instead of one mm per trial); they agree to about 1e-6.
def close(value: float) -> Any:
    return pytest.approx(value, rel=1e-4, abs=1e-5)


# Three trials per optimizer, differing in all that a pack lets differ.
TRIALS: dict[str, list[dict[str, Any]]] = {
    "sgd": [
        {"optimizer": "sgd", "lr": 0.05},
        {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.01, "dropout": 0.3},
        {"optimizer": "sgd", "lr": 0.2, "lr_decay": "step", "lr_decay_rate": 0.5},
    ],
    "momentum": [
        {"optimizer": "momentum", "lr": 0.05, "beta": 0.9},
        {"optimizer": "momentum", "lr": 0.1, "beta": 0.5, "weight_decay": 0.003},
        {"optimizer": "momentum", "lr": 0.05, "beta": 0.99, "init": "normal", "weight_scale": 0.1},
    ],
    "rmsprop": [
        {"optimizer": "rmsprop", "lr": 0.002},
        {"optimizer": "rmsprop", "lr": 0.001, "beta2": 0.99, "eps": 1e-6, "keep_prob": 0.8},
        {
            "optimizer": "rmsprop",
            "lr": 0.003,
            "beta": 0.8,
            "lr_decay": "inverse",
            "lr_decay_rate": 1,
        },
    ],
    "adam": [
        {"optimizer": "adam", "lr": 0.003},
        {"optimizer": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.01},
        {
            "optimizer": "adam",
            "lr": 0.001,
            "eps": 1e-4,
            "lr_decay": "exponential",
            "lr_decay_rate": 0.7,
        },
    ],
}


def recorder(reports: Reports, stop_at: int | None = None) -> Report:
    def report(epoch: int, metrics: dict[str, float]) -> bool:
        reports.append((epoch, metrics))
        return epoch == stop_at

    return report


def one_at_a_time(
    params: list[dict[str, Any]], task: Mapping[str, Any], seeds: list[int]
) -> tuple[list[TrainingResult], list[Reports]]:
    reports: list[Reports] = [[] for _ in params]
    results = [
        train_trial(p, task, recorder(r), seed=s)
        for p, r, s in zip(params, reports, seeds, strict=True)
    ]
    return results, reports


def packed(
    params: list[dict[str, Any]],
    task: Mapping[str, Any],
    seeds: list[int],
    reports: list[Reports] | None = None,
    stop_at: Mapping[int, int] | None = None,
) -> tuple[list[Outcome], list[Reports]]:
    reports = reports if reports is not None else [[] for _ in params]
    stop_at = stop_at or {}
    specs = [
        PackedTrialSpec(p, s, recorder(reports[i], stop_at.get(i)))
        for i, (p, s) in enumerate(zip(params, seeds, strict=True))
    ]
    return train_packed(specs, task), reports


def result(outcome: Outcome) -> TrainingResult:
    assert isinstance(outcome, TrainingResult), outcome
    return outcome


def assert_same_trial(
    expected: TrainingResult, expected_reports: Reports, got: Outcome, got_reports: Reports
) -> None:
    got = result(got)
    assert [e for e, _ in got_reports] == [e for e, _ in expected_reports]
    for (_, want), (_, have) in zip(expected_reports, got_reports, strict=True):
        assert set(have) == set(want)
        for name, value in want.items():
            if name.endswith("_accuracy"):
                assert have[name] == pytest.approx(value, abs=1.5 / N_DEV), name
            else:
                assert have[name] == close(value), name
    assert set(got.metrics) == set(expected.metrics)
    for name in ("train_loss", "dev_loss", "n_params", "model_bytes", "epochs"):
        assert got.metrics[name] == close(expected.metrics[name]), name
    assert got.metrics["dev_accuracy"] == pytest.approx(
        expected.metrics["dev_accuracy"], abs=1.5 / N_DEV
    )
    assert (got.stopped_early, got.epochs_run, got.seed) == (
        expected.stopped_early,
        expected.epochs_run,
        expected.seed,
    )


@pytest.mark.parametrize("optimizer", sorted(TRIALS))
def test_a_pack_matches_its_trials_trained_one_at_a_time(optimizer: str) -> None:
    params, seeds = TRIALS[optimizer], [3, 1, 4]
    expected, expected_reports = one_at_a_time(params, DIGITS_MLP, seeds)
    outcomes, reports = packed(params, DIGITS_MLP, seeds)
    for i in range(len(params)):
        assert_same_trial(expected[i], expected_reports[i], outcomes[i], reports[i])


def test_one_pack_can_mix_optimizers_in_any_order() -> None:
    params = [TRIALS[name][i] for i in range(2) for name in ("adam", "sgd", "rmsprop", "momentum")]
    seeds = list(range(len(params)))
    task = {**DIGITS_MLP, "epochs": 2}
    expected, expected_reports = one_at_a_time(params, task, seeds)
    outcomes, reports = packed(params, task, seeds)
    for i in range(len(params)):
        assert_same_trial(expected[i], expected_reports[i], outcomes[i], reports[i])


@pytest.mark.parametrize(
    ("trainer", "fixed"),
    [
        ("mlp_classifier", {"batch_norm": True, "activation": "tanh", "layers": 3}),
        ("softmax_regression", {}),
        ("cnn_classifier", {"channels": 4, "hidden_units": 16, "batch_norm": True}),
    ],
)
def test_every_trainer_packs(trainer: str, fixed: dict[str, Any], blobs_npz: Path) -> None:
    task = {
        "trainer": trainer,
        "dataset": "file",
        "data_path": str(blobs_npz),
        "epochs": 2,
        "fixed": {**fixed, "batch_size": 32},
        "split": {"train": 0.6, "dev": 0.2, "test": 0.2, "train_dev": 0.25},
    }
    # Adam with batch norm is left out on purpose: batch norm makes some weight gradients
    # zero in exact arithmetic, Adam divides them by their own size, so rounding noise becomes
    # an lr-sized step (train_trial differs from itself by as much between 1 and 2 threads).
    params: list[dict[str, Any]] = [
        {"optimizer": "momentum", "lr": 0.05},
        {"optimizer": "sgd", "lr": 0.1, "dropout": 0.2, "weight_decay": 0.01},
        {"optimizer": "rmsprop", "lr": 0.003},
    ]
    if trainer == "softmax_regression":
        params = [{k: v for k, v in p.items() if k != "dropout"} for p in params]
    expected, expected_reports = one_at_a_time(params, task, [0, 1, 2])
    outcomes, reports = packed(params, task, [0, 1, 2])
    for i in range(len(params)):
        assert "train_dev_loss" in reports[i][0][1]
        assert_same_trial(expected[i], expected_reports[i], outcomes[i], reports[i])


def test_the_returned_model_is_the_trained_trial() -> None:
    """Unpacking writes back weights and batch-norm statistics: evaluating the returned model
    gives the reported numbers, as train_trial's model does."""
    task = {**DIGITS_MLP, "fixed": {"batch_norm": True}, "epochs": 2}
    outcomes, reports = packed([{"lr": 0.05}, {"lr": 0.1, "dropout": 0.2}], task, [0, 1])
    dev = _splits(TaskSpec.model_validate(task), with_test=False).dev
    for outcome, trial_reports in zip(outcomes, reports, strict=True):
        model = result(outcome).model
        assert model is not None
        evaluation = evaluate(model, dev)
        assert evaluation.loss == close(trial_reports[-1][1]["dev_loss"])
        bn = list(model.modules())[3]  # Sequential, Flatten, Linear, BatchNorm1d
        assert isinstance(bn, torch.nn.BatchNorm1d) and bn.num_batches_tracked is not None
        assert int(bn.num_batches_tracked) == 2 * math.ceil(0.6 * 1797 / 64)


PACK = [TRIALS["adam"][0], TRIALS["sgd"][1], TRIALS["momentum"][0]]


def test_stopping_one_trial_leaves_the_others_exactly_as_they_were() -> None:
    task = {**DIGITS_MLP, "epochs": 4}
    full, full_reports = packed(PACK, task, [0, 1, 2])
    stopped, stopped_reports = packed(PACK, task, [0, 1, 2], stop_at={1: 2})
    assert result(stopped[1]).stopped_early and result(stopped[1]).epochs_run == 2
    assert stopped_reports[1] == full_reports[1][:2]
    for i in (0, 2):
        assert stopped_reports[i] == full_reports[i]  # bit for bit: nothing mixes trials
        assert not result(stopped[i]).stopped_early
        for name in ("train_loss", "dev_loss", "dev_accuracy", "dev_f1"):
            assert result(stopped[i]).metrics[name] == result(full[i]).metrics[name]


def test_training_stopped_ends_only_its_trial() -> None:
    reports: list[Reports] = [[] for _ in PACK]

    def stop_now(epoch: int, metrics: dict[str, float]) -> bool:
        reports[0].append((epoch, metrics))
        raise TrainingStopped

    specs = [PackedTrialSpec(PACK[0], 0, stop_now)]
    specs += [PackedTrialSpec(p, i, recorder(reports[i])) for i, p in enumerate(PACK) if i]
    outcomes = train_packed(specs, DIGITS_MLP)
    assert result(outcomes[0]).stopped_early and result(outcomes[0]).epochs_run == 1
    assert [len(r) for r in reports] == [1, 3, 3]
    assert all(not result(o).stopped_early for o in outcomes[1:])


def test_a_failure_fails_only_its_trial() -> None:
    """A diverging trial (NaN) and a trial whose report raises fail alone; the rest train as
    in a pack without them, up to float rounding (the BLAS may split a batched multiply of five
    trials differently from one of three)."""

    def broken(epoch: int, metrics: dict[str, float]) -> bool:
        if epoch == 2:
            raise RuntimeError("lease lost")
        return False

    alone, alone_reports = packed(PACK, DIGITS_MLP, [0, 1, 2])
    reports: list[Reports] = [[] for _ in PACK]
    specs = [PackedTrialSpec(p, i, recorder(reports[i])) for i, p in enumerate(PACK)]
    specs.insert(1, PackedTrialSpec({"optimizer": "sgd", "lr": 1e6}, 7))
    specs.append(PackedTrialSpec(PACK[0], 9, broken))
    outcomes = train_packed(specs, DIGITS_MLP)
    assert isinstance(outcomes[1], TrainingDiverged) and "lr=1e+06" in str(outcomes[1])
    assert isinstance(outcomes[4], RuntimeError) and str(outcomes[4]) == "lease lost"
    survivors = [outcomes[0], outcomes[2], outcomes[3]]
    for got_reports, want_reports in zip(reports, alone_reports, strict=True):
        assert [step for step, _ in got_reports] == [step for step, _ in want_reports]
        for (_, got_metrics), (_, want_metrics) in zip(got_reports, want_reports, strict=True):
            assert got_metrics == {k: close(v) for k, v in want_metrics.items()}
    for got, want in zip(survivors, alone, strict=True):
        assert result(got).metrics["dev_loss"] == close(result(want).metrics["dev_loss"])


def test_a_bad_hyperparameter_fails_only_its_trial() -> None:
    outcomes, _ = packed([{"lr": 0.05}, {"optimizer": "adamw"}], DIGITS_MLP, [0, 1])
    assert isinstance(outcomes[1], HyperparameterError) and "adamw" in str(outcomes[1])
    assert result(outcomes[0]).epochs_run == 3


@pytest.mark.parametrize(
    ("second", "name"),
    [
        ({"layers": 3}, "layers"),
        ({"hidden_units": 32}, "hidden_units"),
        ({"batch_norm": True}, "batch_norm"),
        ({"activation": "tanh"}, "activation"),
        ({"batch_size": 32}, "batch_size"),
    ],
)
def test_trials_of_different_shapes_are_refused(second: dict[str, Any], name: str) -> None:
    with pytest.raises(PackMismatch, match=rf"share {name}\b.*trial 0 has {name}=.*trial 1 has"):
        train_packed([PackedTrialSpec({}), PackedTrialSpec(second)], DIGITS_MLP)


def test_a_custom_trainer_is_refused() -> None:
    task = {"trainer": "custom", "entry_point": "mypkg.train:train"}
    with pytest.raises(PackMismatch, match="'custom' cannot be packed"):
        train_packed([PackedTrialSpec({})], task)


def test_seeds_reproduce_and_the_callers_rng_is_left_alone() -> None:
    params = [{"dropout": 0.3}, {"lr": 0.1}]
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    a = train_packed([PackedTrialSpec(p) for p in params], DIGITS_MLP)
    assert torch.equal(torch.rand(1), expected_draw)
    seeds = [result(o).seed for o in a]
    b = train_packed(
        [PackedTrialSpec(p, s) for p, s in zip(params, seeds, strict=True)], DIGITS_MLP
    )
    for x, y in zip(a, b, strict=True):
        assert result(x).metrics["dev_loss"] == result(y).metrics["dev_loss"]


def test_one_dropout_draw_for_a_whole_pack_keeps_each_trials_rate() -> None:
    """The GPU path (one generator for the pack): each trial drops at its own rate and scales
    the kept units by 1/keep, as nn.Dropout does; a trial without dropout is untouched."""
    rates = [0.0, 0.5, 0.2]
    models = [
        nn.Sequential(nn.Linear(4, 4), nn.ReLU(), *([nn.Dropout(p)] if p else [])) for p in rates
    ]
    network = PackedNetwork(models, torch.Generator().manual_seed(0))
    for key, value in network.store.params.items():  # identity layer: the output is the input
        with torch.no_grad():
            value.copy_(torch.eye(4).expand(3, 4, 4) if key.endswith("weight") else value * 0)
    x = torch.ones(3, 5000, 4)
    out = network.forward(x, shared=False, training=True)
    assert torch.equal(out[0], x[0])
    for k, p in ((1, 0.5), (2, 0.2)):
        kept = out[k] != 0
        assert torch.equal(out[k][kept], torch.full_like(out[k][kept], 1 / (1 - p)))
        dropped = int((~kept).sum())
        assert scipy.stats.binomtest(dropped, kept.numel(), p).pvalue > 0.001
    assert torch.equal(network.forward(x, shared=False, training=False), x)


class MemoryCheckpoints:
    def __init__(self, saved: dict[int, bytes] | None = None) -> None:
        self.saved = dict(saved or {})

    def load(self) -> bytes | None:
        return self.saved[max(self.saved)] if self.saved else None

    def save(self, step: int, data: bytes) -> None:
        self.saved[step] = data


def test_a_packed_trials_checkpoint_resumes_in_train_trial() -> None:
    """A packed trial saves the checkpoints train_trial would (model, optimizer state, data
    order, dropout's generator); train_trial resumes from one and goes on as the pack did."""
    task = {**DIGITS_MLP, "epochs": 4, "checkpoint_every": 2}
    stores = [MemoryCheckpoints() for _ in PACK]
    reports: list[Reports] = [[] for _ in PACK]
    specs = [
        PackedTrialSpec(p, i, recorder(reports[i]), checkpoints=stores[i])
        for i, p in enumerate(PACK)
    ]
    outcomes = train_packed(specs, task)
    for i, params in enumerate(PACK):
        assert sorted(stores[i].saved) == [2, 4]
        resumed: Reports = []
        again = train_trial(
            params,
            task,
            recorder(resumed),
            seed=i,
            checkpoints=MemoryCheckpoints({2: stores[i].saved[2]}),
        )
        assert again.resumed_from == 2
        assert [e for e, _ in resumed] == [3, 4]
        for (_, want), (_, have) in zip(reports[i][2:], resumed, strict=True):
            assert have["train_loss"] == close(want["train_loss"])
            assert have["dev_loss"] == close(want["dev_loss"])
        assert again.metrics["dev_loss"] == close(result(outcomes[i]).metrics["dev_loss"])
