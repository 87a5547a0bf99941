"""The networks of the built-in trainers, built from a trial's hyperparameters."""

from __future__ import annotations

import math

from torch import nn

from workers.training.hyperparameters import Hyperparameters

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def build_model(
    trainer: str, hp: Hyperparameters, input_shape: tuple[int, ...], n_classes: int
) -> nn.Module:
    """A network mapping a batch of ``input_shape`` examples to ``n_classes`` logits."""
    if trainer == "mlp_classifier":
        return mlp(hp, math.prod(input_shape), n_classes)
    if trainer == "softmax_regression":
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_classes))
    if trainer == "cnn_classifier":
        return cnn(hp, input_shape, n_classes)
    raise ValueError(f"unknown trainer {trainer!r}")


def dropout_probability(hp: Hyperparameters) -> float:
    keep = hp.optional_number("keep_prob") if "keep_prob" in hp else None
    return 1.0 - keep if keep is not None else hp.number("dropout")


def mlp(hp: Hyperparameters, features: int, n_classes: int) -> nn.Sequential:
    """[Linear → BatchNorm? → activation → Dropout?] × layers → Linear.

    Batch norm normalizes the pre-activation z, as in the course; the Linear before it then
    has no bias, since the mean subtraction would cancel it and β takes its role.
    """
    hidden, batch_norm = hp.integer("hidden_units"), hp.flag("batch_norm")
    activation, p = _ACTIVATIONS[hp.choice("activation")], dropout_probability(hp)
    layers: list[nn.Module] = [nn.Flatten()]
    width = features
    for _ in range(hp.integer("layers")):
        layers.append(nn.Linear(width, hidden, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(activation())
        if p > 0:
            layers.append(nn.Dropout(p))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    model = nn.Sequential(*layers)
    initialize(model, hp.choice("init"), hp.number("weight_scale"))
    return model


def initialize(model: nn.Module, scheme: str, weight_scale: float) -> None:
    """he: N(0, 2/fan_in), for ReLU-like units; xavier: N(0, 2/(fan_in+fan_out)), for
    tanh/sigmoid; normal: N(0, weight_scale²), the naive init whose small scale makes deep
    nets' activations (and gradients) vanish. Biases start at zero."""
    for module in model.modules():
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue
        if scheme == "he":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_normal_(module.weight)
        elif scheme == "normal":
            nn.init.normal_(module.weight, 0.0, weight_scale)
        else:
            raise ValueError(f"unknown init {scheme!r}; allowed values: he, xavier, normal")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def cnn(hp: Hyperparameters, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """Two [3×3 conv → BatchNorm? → ReLU → 2×2 max-pool] blocks (channels, then 2×channels),
    then a fully connected ReLU layer, Dropout? and the classifier. Each pool halves the side,
    so 8×8 digits, 28×28 MNIST and 32×32 CIFAR all fit."""
    if len(input_shape) != 3 or input_shape[1] < 4 or input_shape[2] < 4:
        raise ValueError(
            "cnn_classifier needs images of at least 4×4, shaped (N, C, H, W) or (N, H, W); "
            f"got examples of shape {input_shape}"
        )
    in_channels, height, width = input_shape
    channels, batch_norm = hp.integer("channels"), hp.flag("batch_norm")
    p = dropout_probability(hp)

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)
        norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
        return [conv, *norm, nn.ReLU(), nn.MaxPool2d(2)]

    flat = 2 * channels * (height // 4) * (width // 4)
    return nn.Sequential(
        *block(in_channels, channels),
        *block(channels, 2 * channels),
        nn.Flatten(),
        nn.Linear(flat, hp.integer("hidden_units")),
        nn.ReLU(),
        *([nn.Dropout(p)] if p > 0 else []),
        nn.Linear(hp.integer("hidden_units"), n_classes),
    )
