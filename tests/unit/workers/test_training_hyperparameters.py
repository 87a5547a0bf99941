"""Hyperparameter resolution: precedence, checks, and agreement with the core's catalogue."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hpsearch import tasks
from hpsearch.spec import SplitSpec
from workers.training.datasets import Dataset
from workers.training.hyperparameters import HyperparameterError, Hyperparameters, resolve
from workers.training.models import build_model
from workers.training.optimizers import build_optimizer, learning_rate
from workers.training.run import fit
from workers.training.splits import make_splits


def test_params_override_fixed_which_override_defaults() -> None:
    hp = resolve("mlp_classifier", {"lr": 0.5, "layers": 3}, {"lr": 0.1})
    assert hp["lr"] == 0.1
    assert hp["layers"] == 3
    assert hp["hidden_units"] == tasks.defaults("mlp_classifier")["hidden_units"]
    assert hp.explicit == {"lr", "layers"}


def test_unknown_choice_names_the_parameter_and_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="optimizer") as info:
        resolve("mlp_classifier", {}, {"optimizer": "adamw"})
    for allowed in ("sgd", "momentum", "rmsprop", "adam"):
        assert allowed in str(info.value)


def test_unknown_name_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(HyperparameterError, match=r"'layers'.*known: .*'lr'"):
        resolve("softmax_regression", {}, {"layers": 2})


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("lr", 0.0, "> 0"),
        ("lr", -1e-3, "> 0"),
        ("beta", 1.0, r"\[0, 1\)"),
        ("dropout", 1.0, r"\[0, 1\)"),
        ("keep_prob", 0.0, r"\(0, 1\]"),
        ("batch_size", 0, ">= 1"),
        ("batch_size", 32.5, "integer"),
        ("batch_size", True, "integer"),
        ("lr", "fast", "number"),
        ("batch_norm", "yes", "true or false"),
        ("activation", 3, "string"),
    ],
)
def test_values_outside_their_type_or_range_are_rejected(
    name: str, value: bool | int | float | str, reason: str
) -> None:
    with pytest.raises(HyperparameterError, match=rf"{name}=.*{reason}"):
        resolve("mlp_classifier", {}, {name: value})


def test_json_spellings_of_ints_and_flags_are_accepted() -> None:
    hp = resolve("mlp_classifier", {"batch_norm": 1}, {"batch_size": 32.0, "lr": 1})
    assert hp["batch_size"] == 32 and isinstance(hp["batch_size"], int)
    assert hp["batch_norm"] is True
    assert hp["lr"] == 1.0 and isinstance(hp["lr"], float)


def test_decay_factor_must_be_a_fraction_for_exponential_and_step() -> None:
    hp = resolve("mlp_classifier", {}, {"lr_decay": "exponential"})  # rate defaults to 0
    with pytest.raises(HyperparameterError, match="lr_decay_rate"):
        learning_rate(hp, 1)


class _Recording(Hyperparameters):
    """Hyperparameters that remember which names were read."""

    def __init__(self, hp: Hyperparameters, read: set[str]) -> None:
        super().__init__(hp.resolved, hp.explicit)
        object.__setattr__(self, "read", read)

    def __getitem__(self, name: str) -> bool | int | float | str | None:
        self.read.add(name)  # type: ignore[attr-defined]
        return super().__getitem__(name)


# Settings that together take every branch that reads a hyperparameter.
_VARIANTS: list[dict[str, bool | int | float | str]] = [
    {"optimizer": "sgd"},
    {"optimizer": "momentum"},
    {"optimizer": "rmsprop", "beta2": 0.99},
    {"optimizer": "adam", "lr_decay": "step", "lr_decay_rate": 0.5},
    {"lr_decay": "inverse"},
    {"lr_decay": "exponential", "lr_decay_rate": 0.9},
]


@pytest.mark.parametrize("trainer", sorted(tasks.TRAINERS))
def test_every_catalogued_hyperparameter_is_used_by_the_trainer(
    trainer: str, make_blobs: Callable[..., tuple[np.ndarray, np.ndarray]]
) -> None:
    x, y = make_blobs(40)
    splits = make_splits(Dataset(x, y, 3, 1.0), SplitSpec(), normalize=True, with_test=False)
    known = set(tasks.known_hyperparameters(trainer))
    read: set[str] = set()
    for variant in _VARIANTS:
        for extra in ({}, {"keep_prob": 0.8}) if "keep_prob" in known else ({},):
            hp = _Recording(resolve(trainer, {}, {**variant, **extra}), read)
            model = build_model(trainer, hp, splits.input_shape, splits.n_classes)
            fit(model, build_optimizer(model, hp), hp, splits, 3, lambda e, m: False, seed=0)
    assert read == known
