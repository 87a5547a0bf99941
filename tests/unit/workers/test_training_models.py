"""Networks, initialization, optimizers and learning-rate decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workers.training.hyperparameters import resolve
from workers.training.metrics import model_size
from workers.training.models import build_model
from workers.training.optimizers import build_optimizer, learning_rate


def _mlp_params(d: int, h: int, layers: int, k: int, batch_norm: bool) -> int:
    if batch_norm:  # no Linear bias; BatchNorm has γ and β
        return d * h + (layers - 1) * h * h + layers * 2 * h + h * k + k
    return d * h + h + (layers - 1) * (h * h + h) + h * k + k


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_mlp_parameter_count_is_the_analytic_one(layers: int, batch_norm: bool) -> None:
    hp = resolve(
        "mlp_classifier", {}, {"layers": layers, "hidden_units": 32, "batch_norm": batch_norm}
    )
    model = build_model("mlp_classifier", hp, (1, 8, 8), 10)
    n_params, n_bytes = model_size(model)
    expected = 64 * 10 + 10 if layers == 0 else _mlp_params(64, 32, layers, 10, batch_norm)
    assert n_params == expected
    # float32 parameters, plus per batch norm two float32 statistics and an int64 counter
    assert n_bytes == 4 * expected + (layers * (2 * 4 * 32 + 8) if batch_norm else 0)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_fits_digits_mnist_and_cifar_shapes(shape: tuple[int, int, int]) -> None:
    hp = resolve("cnn_classifier", {}, {"channels": 4, "hidden_units": 8, "batch_norm": True})
    model = build_model("cnn_classifier", hp, shape, 10)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_refuses_flat_features() -> None:
    hp = resolve("cnn_classifier", {}, {})
    with pytest.raises(ValueError, match=r"cnn_classifier needs images.*\(64,\)"):
        build_model("cnn_classifier", hp, (64,), 10)


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [("he", math.sqrt(2 / 400)), ("xavier", math.sqrt(2 / (400 + 400))), ("normal", 0.05)],
)
def test_init_schemes_set_the_weight_scale(init: str, expected_std: float) -> None:
    hp = resolve(
        "mlp_classifier", {}, {"init": init, "weight_scale": 0.05, "hidden_units": 400, "layers": 2}
    )
    torch.manual_seed(0)
    model = build_model("mlp_classifier", hp, (400,), 3)
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][1]  # the 400×400 layer
    assert float(hidden.weight.detach().std()) == pytest.approx(expected_std, rel=0.03)
    assert not hidden.bias.detach().any()


def test_keep_prob_overrides_dropout() -> None:
    hp = resolve("mlp_classifier", {"dropout": 0.5}, {"keep_prob": 0.8})
    dropouts = [
        m for m in build_model("mlp_classifier", hp, (4,), 2).modules() if isinstance(m, nn.Dropout)
    ]
    assert len(dropouts) == 2 and all(d.p == pytest.approx(0.2) for d in dropouts)


def test_no_dropout_layer_by_default() -> None:
    hp = resolve("mlp_classifier", {}, {})
    assert not any(
        isinstance(m, nn.Dropout) for m in build_model("mlp_classifier", hp, (4,), 2).modules()
    )


@pytest.mark.parametrize(
    ("decay", "rate", "every", "expected"),
    [
        ("none", 0.0, 1, [0.1, 0.1, 0.1, 0.1]),
        ("inverse", 1.0, 1, [0.1, 0.05, 0.1 / 3, 0.025]),
        ("exponential", 0.5, 1, [0.1, 0.05, 0.025, 0.0125]),
        ("step", 0.1, 2, [0.1, 0.1, 0.01, 0.01]),
    ],
)
def test_learning_rate_decay(decay: str, rate: float, every: int, expected: list[float]) -> None:
    hp = resolve(
        "softmax_regression",
        {},
        {"lr": 0.1, "lr_decay": decay, "lr_decay_rate": rate, "lr_decay_every": every},
    )
    assert [learning_rate(hp, e) for e in (1, 2, 3, 4)] == pytest.approx(expected)


def _one_step(params: dict[str, float | str], grads: list[float]) -> float:
    """The weight after steps with the given gradients, from w = 0 (loss = g·w per step)."""
    w = nn.Parameter(torch.zeros(1, 1))  # 2-D: a weight, so weight_decay would apply
    model = nn.Module()
    model.w = w
    optimizer = build_optimizer(model, resolve("softmax_regression", {}, params))
    for g in grads:
        optimizer.zero_grad()
        torch.autograd.backward(w.sum() * g)
        optimizer.step()
    return float(w.detach())


def test_momentum_is_an_average_of_gradients() -> None:
    # v1 = g1 = 1; v2 = 0.9·1 + 0.1·0 = 0.9; w = -lr·(1 + 0.9)
    assert _one_step(
        {"optimizer": "momentum", "lr": 0.1, "beta": 0.9}, [1.0, 0.0]
    ) == pytest.approx(-0.19)


def test_rmsprop_decays_with_beta_unless_beta2_is_set() -> None:
    # s = (1 - decay)·g²; step = lr·g/(sqrt(s) + eps) = lr/sqrt(1 - decay) for g = 1
    base: dict[str, float | str] = {"optimizer": "rmsprop", "lr": 0.01, "beta": 0.75}
    assert _one_step(base, [1.0]) == pytest.approx(-0.01 / math.sqrt(0.25))
    assert _one_step({**base, "beta2": 0.99}, [1.0]) == pytest.approx(-0.01 / math.sqrt(0.01))


def test_weight_decay_shrinks_weights_not_biases() -> None:
    hp = resolve("softmax_regression", {}, {"optimizer": "sgd", "lr": 0.5, "weight_decay": 1.0})
    layer = nn.Linear(1, 1)
    nn.init.ones_(layer.weight)
    nn.init.ones_(layer.bias)
    optimizer = build_optimizer(layer, hp)
    torch.autograd.backward(layer.weight.sum() * 0 + layer.bias.sum() * 0)
    optimizer.step()
    assert layer.weight.item() == pytest.approx(0.5) and layer.bias.item() == 1.0
