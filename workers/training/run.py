"""One trial of a built-in trainer, start to finish: data, model, epochs, metrics.

The worker's claim loop calls :func:`train_trial` and nothing else of this package; the final
test evaluation of a study's chosen trial calls :func:`evaluate_checkpoint` (its final model),
:func:`evaluate_test` or :func:`train_and_evaluate_test`, the only code that reads the test set.

With ``checkpoints``, :func:`train_trial` saves a checkpoint every ``task.checkpoint_every``
epochs and resumes from the latest one it finds (see ``checkpoint.py``).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from hpsearch.space import ParamValue
from hpsearch.spec import TaskSpec
from workers.outcomes import TrainingDiverged
from workers.training.checkpoint import (
    CheckpointError,
    Checkpoints,
    CheckpointWriter,
    Resume,
    load_model,
    restore,
    unpack,
)
from workers.training.datasets import load_dataset
from workers.training.hyperparameters import Hyperparameters, resolve
from workers.training.metrics import Evaluation, evaluate, latency_ms, macro_scores, model_size
from workers.training.models import build_model
from workers.training.optimizers import build_optimizer, learning_rate, set_learning_rate
from workers.training.splits import Split, Splits, make_splits

Report = Callable[[int, dict[str, float]], bool]
"""Called after each epoch with (epoch from 1, metrics); True asks training to stop."""


class TrainingStopped(Exception):
    """Raised by a ``report`` callback to end training at once, like returning True: the
    trial still returns its metrics so far, with ``stopped_early`` set."""


@dataclass
class TrainingResult:
    metrics: dict[str, float]
    stopped_early: bool
    """``report`` asked to stop before the last epoch."""
    epochs_run: int
    seed: int = 0
    """The torch seed used (drawn at random when none was given), to reproduce the trial."""
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    """The trained network, for :func:`evaluate_test` or a checkpoint."""
    resumed_from: int | None = None
    """The epoch of the checkpoint training continued from; None for a fresh start."""


def train_trial(
    params: Mapping[str, ParamValue],
    task: Mapping[str, Any],
    report: Report,
    device: str = "cpu",
    seed: int | None = None,
    *,
    checkpoints: Checkpoints | None = None,
) -> TrainingResult:
    """Trains ``task.trainer`` with ``params`` over ``task.fixed`` over the catalogue defaults.

    With ``checkpoints``, continues from the latest checkpoint there (reporting from the
    epoch after it) and saves one every ``task.checkpoint_every`` epochs and after the last.

    Never evaluates the test set. Raises ValueError (HyperparameterError, SplitError,
    CheckpointError, ...) for a task, parameter or checkpoint it cannot run, naming the
    culprit; FileNotFoundError for missing data; TrainingDiverged when the loss stops being
    finite.
    """
    spec = TaskSpec.model_validate(dict(task))
    hp = resolve(spec.trainer, spec.fixed, params)
    learning_rate(hp, 1)  # checks the decay settings before any data is read
    target = torch.device(device)
    splits = _splits(spec, with_test=False).to(target)
    seed = secrets.randbelow(2**31) if seed is None else seed
    # fork_rng: seeding must make this trial reproducible without reseeding the caller's RNG.
    with torch.random.fork_rng(devices=_rng_devices(target)):
        torch.manual_seed(seed)
        model = build_model(spec.trainer, hp, splits.input_shape, splits.n_classes).to(target)
        optimizer = build_optimizer(model, hp)
        resume, writer = None, None
        if checkpoints is not None:
            data = checkpoints.load()
            if data is not None:
                resume = restore(unpack(data), model, optimizer, hp.choice("optimizer"), target)
            writer = CheckpointWriter(
                checkpoints,
                spec.checkpoint_every,
                trainer=spec.trainer,
                params=params,
                model=model,
                optimizer=optimizer,
                optimizer_name=hp.choice("optimizer"),
                device=target,
            )
        progress = fit(
            model, optimizer, hp, splits, spec.epochs, report, seed, resume=resume, saver=writer
        )
    return TrainingResult(
        metrics=_final_metrics(model, splits, progress),
        stopped_early=progress.stopped_early,
        epochs_run=progress.epochs_run,
        seed=seed,
        model=model,
        resumed_from=resume.epoch if resume is not None else None,
    )


def evaluate_test(
    model: nn.Module, task: Mapping[str, Any], device: str = "cpu"
) -> dict[str, float]:
    """test_loss, test_accuracy, test_error and macro test_precision/recall/f1 of a model
    trained by :func:`train_trial` on the same task (same split and normalization)."""
    spec = TaskSpec.model_validate(dict(task))
    return _test_metrics(model, _splits(spec, with_test=True), torch.device(device))


def evaluate_checkpoint(
    params: Mapping[str, ParamValue],
    task: Mapping[str, Any],
    data: bytes,
    device: str = "cpu",
    *,
    epoch: int | None = None,
) -> dict[str, float]:
    """:func:`evaluate_test` of the model saved in checkpoint ``data`` (a trial's final model,
    as :func:`train_trial` saved it with ``checkpoints``), without training anything.

    ``epoch``: the trial's last epoch; a checkpoint of another epoch is not its final model
    (CheckpointError)."""
    spec = TaskSpec.model_validate(dict(task))
    hp = resolve(spec.trainer, spec.fixed, params)
    state = unpack(data)
    if epoch is not None and state["epoch"] != epoch:
        raise CheckpointError(
            f"the checkpoint is of epoch {state['epoch']}, the trial ended at epoch {epoch}"
        )
    splits = _splits(spec, with_test=True)
    model = build_model(spec.trainer, hp, splits.input_shape, splits.n_classes)
    load_model(state, model)
    return _test_metrics(model, splits, torch.device(device))


def _test_metrics(model: nn.Module, splits: Splits, target: torch.device) -> dict[str, float]:
    assert splits.test is not None
    model = model.to(target)
    test = splits.test.to(target)
    result = evaluate(model, test)
    scores = macro_scores(test.y, result.predictions)
    return {
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "test_error": 1.0 - result.accuracy,
        **{f"test_{name}": value for name, value in scores.items()},
    }


def train_and_evaluate_test(
    params: Mapping[str, ParamValue],
    task: Mapping[str, Any],
    report: Report | None = None,
    device: str = "cpu",
    seed: int | None = None,
) -> TrainingResult:
    """:func:`train_trial`, then the test metrics added to its final metrics: for the one
    trial a study reports on, retrained from its parameters and seed."""
    result = train_trial(params, task, report or _never_stop, device, seed)
    assert result.model is not None
    result.metrics.update(evaluate_test(result.model, task, device))
    return result


def _never_stop(epoch: int, metrics: dict[str, float]) -> bool:
    return False


def _splits(spec: TaskSpec, *, with_test: bool) -> Splits:
    dataset = load_dataset(spec.dataset, spec.data_path)
    return make_splits(dataset, spec.split, spec.normalize, with_test=with_test)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@dataclass
class Progress:
    """Where training ended, and the last epoch's evaluations (of the model as returned)."""

    epochs_run: int
    stopped_early: bool
    seconds: float
    train: Evaluation
    dev: Evaluation
    train_dev: Evaluation | None


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    hp: Hyperparameters,
    splits: Splits,
    epochs: int,
    report: Report,
    seed: int,
    *,
    resume: Resume | None = None,
    saver: Callable[[int, float, torch.Generator, bool], None] | None = None,
) -> Progress:
    """Runs up to ``epochs`` epochs of mini-batch training, evaluating and reporting after
    each; stops when ``report`` returns True or raises TrainingStopped.

    ``resume`` continues after its epoch; ``saver(epoch, seconds, data_order, last)`` is called
    after each epoch's report (``last``: training ends there), to save a checkpoint.
    """
    generator = torch.Generator().manual_seed(seed)  # data order: reproducible per trial seed
    seconds, first = 0.0, 1
    if resume is not None:
        generator.set_state(resume.data_order)
        seconds, first = resume.seconds, resume.epoch + 1
        if first > epochs:  # the checkpoint is of the last epoch: nothing left to train
            return _progress_as_is(model, splits, resume.epoch, seconds)
    for epoch in range(first, epochs + 1):
        started = time.perf_counter()
        lr = learning_rate(hp, epoch)
        set_learning_rate(optimizer, lr)
        _train_epoch(model, optimizer, splits.train, hp.integer("batch_size"), generator)
        train, dev = evaluate(model, splits.train), evaluate(model, splits.dev)
        train_dev = evaluate(model, splits.train_dev) if splits.train_dev is not None else None
        seconds += time.perf_counter() - started  # the report (an HTTP call) is not training
        metrics = _epoch_metrics(train, dev, train_dev, lr)
        _check_finite(metrics, epoch, lr)
        try:
            stop = report(epoch, metrics)
        except TrainingStopped:
            stop = True
        if saver is not None:
            saver(epoch, seconds, generator, stop or epoch == epochs)
        if stop or epoch == epochs:
            return Progress(epoch, stop and epoch < epochs, seconds, train, dev, train_dev)
    raise AssertionError("unreachable: epochs >= 1")


def _progress_as_is(model: nn.Module, splits: Splits, epoch: int, seconds: float) -> Progress:
    train, dev = evaluate(model, splits.train), evaluate(model, splits.dev)
    train_dev = evaluate(model, splits.train_dev) if splits.train_dev is not None else None
    return Progress(epoch, False, seconds, train, dev, train_dev)


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    model.train()
    n = len(train)
    order = torch.randperm(n, generator=generator).to(train.x.device)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if len(batch) == 1 and n > 1:
            continue  # batch norm cannot normalize one example; reshuffled next epoch
        loss = functional.cross_entropy(model(train.x[batch]), train.y[batch])
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()


def _epoch_metrics(
    train: Evaluation, dev: Evaluation, train_dev: Evaluation | None, lr: float
) -> dict[str, float]:
    parts = [("train", train), ("dev", dev)]
    if train_dev is not None:
        parts.append(("train_dev", train_dev))
    metrics = {"lr": lr}
    for name, evaluation in parts:
        metrics[f"{name}_loss"] = evaluation.loss
        metrics[f"{name}_accuracy"] = evaluation.accuracy
    return metrics


def _check_finite(metrics: Mapping[str, float], epoch: int, lr: float) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(
            f"training diverged in epoch {epoch} at lr={lr:g} ({bad}); "
            "a lower learning rate (or batch norm) usually fixes it",
            metrics,
        )


def _final_metrics(model: nn.Module, splits: Splits, progress: Progress) -> dict[str, float]:
    metrics = _epoch_metrics(progress.train, progress.dev, progress.train_dev, 0.0)
    del metrics["lr"]
    for name in ("train", "dev", "train_dev"):
        if f"{name}_accuracy" in metrics:
            metrics[f"{name}_error"] = 1.0 - metrics[f"{name}_accuracy"]
    scores = macro_scores(splits.dev.y, progress.dev.predictions)
    metrics.update({f"dev_{name}": value for name, value in scores.items()})
    n_params, n_bytes = model_size(model)
    metrics.update(
        latency_ms=latency_ms(model, splits.dev.x[:1]),
        n_params=float(n_params),
        model_bytes=float(n_bytes),
        train_seconds=progress.seconds,
        epochs=float(progress.epochs_run),
    )
    return metrics
