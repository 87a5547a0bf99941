"""Optimizers and learning-rate decay, in the course's formulation of each."""

from __future__ import annotations

import torch
from torch import nn

from workers.training.hyperparameters import HyperparameterError, Hyperparameters


def build_optimizer(model: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    """sgd; momentum (v = βv + (1-β)g, an average, so lr means the same step size for any β);
    rmsprop (decay beta2 when the study sets it, else beta); adam (beta1, beta2, eps).

    weight_decay is L2 on weights only: biases and batch-norm γ/β shift and scale, they do not
    fit noise, and shrinking them toward 0 only hurts (the course regularizes W alone).
    """
    decay = hp.number("weight_decay")
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
    name, lr = hp.choice("optimizer"), hp.number("lr")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "momentum":
        beta = hp.number("beta")
        return torch.optim.SGD(groups, lr=lr, momentum=beta, dampening=beta)
    if name == "rmsprop":
        alpha = hp.number("beta2") if "beta2" in hp.explicit else hp.number("beta")
        return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=hp.number("eps"))
    if name == "adam":
        betas = (hp.number("beta1"), hp.number("beta2"))
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=hp.number("eps"))
    raise HyperparameterError(
        f"hyperparameter optimizer={name!r} is not allowed; "
        "allowed values: ['sgd', 'momentum', 'rmsprop', 'adam']"
    )


def learning_rate(hp: Hyperparameters, epoch: int) -> float:
    """α for ``epoch`` (from 1): none α0; inverse α0/(1+k·t); exponential α0·k^t; step
    α0·k^⌊t/every⌋, where t = epoch - 1 (so the first epoch runs at α0) and k = lr_decay_rate.
    """
    base, kind, rate = hp.number("lr"), hp.choice("lr_decay"), hp.number("lr_decay_rate")
    t = epoch - 1
    if kind == "none":
        return base
    if kind == "inverse":
        return base / (1 + rate * t)
    if not 0 < rate <= 1:
        raise HyperparameterError(
            f"hyperparameter lr_decay_rate={rate:g} must be in (0, 1] for lr_decay={kind} "
            "(the factor α is multiplied by)"
        )
    if kind == "exponential":
        return float(base * rate**t)
    if kind == "step":
        return float(base * rate ** (t // hp.integer("lr_decay_every")))
    raise HyperparameterError(
        f"hyperparameter lr_decay={kind!r} is not allowed; "
        "allowed values: ['none', 'inverse', 'exponential', 'step']"
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
