"""Custom training code for hpsearch: your own loop, searched and pruned by the service.

Run a worker that may execute it (from the repository root, so ``examples`` is importable)::

    hpsearch submit examples/custom-study.yaml
    hpsearch worker --allow examples.custom_train:train

The worker calls ``train(trial)`` once per trial: ``trial.params`` holds the sampled values
(``lr``, ``hidden_units``, ``weight_decay`` below — the names are yours), ``trial.task`` the
study's task, ``trial.device`` where to train and ``trial.seed`` a seed. ``trial.report(step,
metrics)`` sends one epoch's metrics; when it returns True (the study's pruner stopped the
trial, a user stopped it, or the worker is shutting down) return at once. The returned dict is
the trial's final metrics: the objective and any satisficing metrics must be in it.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn


def train(trial: Any) -> dict[str, float]:
    torch.manual_seed(trial.seed)
    x_train, y_train, x_dev, y_dev = _digits(trial.device)
    p = trial.params
    model = nn.Sequential(
        nn.Linear(64, int(p["hidden_units"])), nn.ReLU(), nn.Linear(int(p["hidden_units"]), 10)
    ).to(trial.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    for epoch in range(1, trial.epochs + 1):
        model.train()
        for batch in torch.randperm(len(x_train), device=trial.device).split(64):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        metrics = _evaluate(model, x_train, y_train, x_dev, y_dev)
        if trial.report(epoch, metrics):
            break
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["n_params"] = float(sum(t.numel() for t in model.parameters()))
    return metrics


def _digits(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x_all = torch.tensor(x, dtype=torch.float32)[order] / 16.0
    y_all = torch.tensor(y)[order]
    cut = int(0.8 * len(x))
    return (
        x_all[:cut].to(device),
        y_all[:cut].to(device),
        x_all[cut:].to(device),
        y_all[cut:].to(device),
    )


@torch.no_grad()
def _evaluate(
    model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    model.eval()
    train_accuracy = (model(x_train).argmax(1) == y_train).float().mean().item()
    logits = model(x)
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return {
        "train_accuracy": train_accuracy,
        "train_error": 1.0 - train_accuracy,
        "dev_loss": nn.functional.cross_entropy(logits, y).item(),
        "dev_accuracy": accuracy,
        "dev_error": 1.0 - accuracy,
    }
