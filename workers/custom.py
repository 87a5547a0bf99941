"""Custom training code: a user's ``train(trial)`` function, run by a worker that allows it.

A study names the function (``task: {trainer: custom, entry_point: "mypkg.train:train"}``);
a worker runs it only if its own command line says so (``hpsearch worker --allow
mypkg.train:train``). A study can be submitted by anyone who can reach the server, so the
worker's operator — not the study's author — decides which code runs on the box: any other
entry point fails the trial with the reason, and its module is never imported.

The function receives a :class:`Trial` and returns its final metrics. The same function runs
in a notebook with ``study.optimize(train)``: both trials have the interface
``hpsearch.TrialLike``::

    def train(trial):
        state = trial.load_checkpoint()  # None on a first attempt
        first = 1 if state is None else state["epoch"] + 1
        for epoch in range(first, trial.epochs + 1):
            ...  # one epoch with trial.params["lr"], ...
            trial.save_checkpoint({"epoch": epoch, "model": model.state_dict()})
            if trial.report(epoch, {"dev_accuracy": acc}):
                break  # pruned, stopped by the user, or the worker is shutting down
        return {"dev_accuracy": acc, "latency_ms": ms}

A checkpoint goes to the server's artifact store, as the built-in trainers' do: a trial
re-queued after its worker died resumes from it on another worker, and a fork starts from it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsearch.spec import ENTRY_POINT
from workers import checkpoint_state
from workers.checkpoints import Checkpoints

Report = Callable[[int, dict[str, float]], bool]


class EntryPointNotAllowed(Exception):
    """The study names code this worker was not started to run."""

    def __init__(self, entry_point: str) -> None:
        super().__init__(
            f"entry point {entry_point} is not allowed on this worker; "
            f"start it with --allow {entry_point}"
        )


class EntryPointError(ValueError):
    """An ``--allow`` value that is malformed or names a module that cannot be found."""


@dataclass
class Trial:
    """What the user's function sees of one trial."""

    params: dict[str, Any]
    """The sampled values, over the task's ``fixed`` ones."""
    task: dict[str, Any]
    """The study's ``task`` as submitted (with defaults filled in)."""
    number: int
    """The trial's number in its study."""
    device: str
    """Where this worker trains: ``cpu``, ``cuda`` or ``cuda:N``."""
    seed: int
    """A seed for the trial's randomness, so that it can be reproduced."""
    _report: Report = field(repr=False)
    _should_stop: Callable[[], bool] = field(default=lambda: False, repr=False)
    stop_requested: bool = False
    """Whether a report has asked to stop."""
    last_step: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    _checkpoints: Checkpoints | None = field(default=None, repr=False)

    @property
    def epochs(self) -> int:
        """``task.epochs``: how many steps the study gives a trial."""
        return int(self.task.get("epochs", 1))

    @property
    def should_stop(self) -> bool:
        """Whether the worker wants this trial to end (shutting down, or a stop came with a
        heartbeat), without a report: for code whose epochs are long, to check mid-epoch.
        Report (and return) soon after it becomes True."""
        return self.stop_requested or self._should_stop()

    def save_checkpoint(self, state: Any, step: int | None = None) -> None:
        """Keeps ``state`` (tensors, ``state_dict()``s, numbers, strings, and lists and dicts
        of them: what ``torch.load(weights_only=True)`` reads back) as the trial's checkpoint
        after ``step`` (default: the last step reported, so call it after that step's
        report). It is stored once the reports up to it are, so a trial resumed from it
        reports from the step after it."""
        step = self.last_step if step is None else step
        if step < 1:
            raise ValueError("save_checkpoint: report a step first, or give step=N (N >= 1)")
        if self._checkpoints is None:
            return  # run outside a worker (a test of the user's own): nothing to keep it
        every = int(self.task.get("checkpoint_every", 1))
        if every == 0:
            return
        self._checkpoints.save(step, checkpoint_state.encode(state))

    def load_checkpoint(self) -> Any | None:
        """The state the last :meth:`save_checkpoint` of this trial kept (on this attempt or
        one before it, or the parent's for a fork); None when there is none."""
        if self._checkpoints is None:
            return None
        data = self._checkpoints.load()
        if not data:
            return None
        return checkpoint_state.decode(data, self.device)

    def report(self, step: int, metrics: Mapping[str, Any] | None = None, /, **named: Any) -> bool:
        """Sends one step's metrics to the server (``report(3, {"loss": 0.2})`` or
        ``report(3, loss=0.2)``); True asks the function to stop now."""
        clean = _numbers({**(metrics or {}), **named}, f"trial.report(step={step})")
        self.last_step, self.last_metrics = step, clean
        stop = bool(self._report(step, clean))
        self.stop_requested = self.stop_requested or stop
        return stop


@dataclass
class CustomResult:
    metrics: dict[str, float]
    stopped_early: bool
    epochs_run: int


def check_allowed(entry_point: str, allowed: Iterable[str]) -> None:
    """Raises :class:`EntryPointNotAllowed` unless ``entry_point`` is exactly one allowed."""
    if entry_point not in set(allowed):
        raise EntryPointNotAllowed(entry_point)


def check_importable(allowed: Iterable[str]) -> None:
    """At worker start: each ``--allow`` value is ``module:function`` and its module exists.

    The worker's working directory is put on ``sys.path`` first, as ``python -m`` would, so
    ``--allow train:train`` finds ``./train.py``. Nothing is executed beyond the packages that
    contain an allowed module.
    """
    allowed = list(allowed)
    if allowed and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for entry_point in allowed:
        if not ENTRY_POINT.match(entry_point):
            raise EntryPointError(
                f"--allow {entry_point!r}: expected module:function (e.g. mypkg.train:train)"
            )
        module = entry_point.split(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except ImportError as e:
            raise EntryPointError(f"--allow {entry_point}: {e}") from None
        if found is None:
            raise EntryPointError(
                f"--allow {entry_point}: no module named {module!r} (install it, or start the "
                "worker in the directory that holds it)"
            )


def load(entry_point: str) -> Callable[[Trial], Any]:
    module_name, function_name = entry_point.split(":")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TypeError(f"entry point {entry_point}: {module_name} has no function {function_name}")
    return function  # type: ignore[no-any-return]


def run_custom(
    params: Mapping[str, Any],
    task: Mapping[str, Any],
    report: Report,
    *,
    allowed: Iterable[str],
    device: str = "cpu",
    seed: int = 0,
    number: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    checkpoints: Checkpoints | None = None,
) -> CustomResult:
    """Runs ``task.entry_point`` if ``allowed`` names it; its returned metrics are final.

    A function that returns ``None`` ends with the metrics of its last report.
    """
    entry_point = str(task.get("entry_point"))
    check_allowed(entry_point, allowed)  # before any import: a refused module never runs
    function = load(entry_point)
    trial = Trial(
        params={**task.get("fixed", {}), **params},
        task=dict(task),
        number=number,
        device=device,
        seed=seed,
        _report=report,
        _should_stop=should_stop,
        _checkpoints=checkpoints,
    )
    returned = function(trial)
    if returned is None:
        metrics = dict(trial.last_metrics)
    elif isinstance(returned, Mapping):
        metrics = _numbers(returned, f"the value returned by {entry_point}")
    else:
        raise TypeError(
            f"{entry_point} returned {type(returned).__name__}; it must return a dict of "
            "metric name -> number (or None to keep its last report)"
        )
    return CustomResult(metrics, trial.stop_requested, trial.last_step)


def _numbers(metrics: Mapping[str, Any], where: str) -> dict[str, float]:
    """Metrics as floats (numpy and torch scalars included); NaN/inf kept for the server to
    record as missing. Anything else is the user's mistake, named."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not hasattr(value, "__float__"):
            raise TypeError(f"{where}: metric {name!r} is {value!r}, not a number")
        number = float(value)
        out[str(name)] = number if math.isfinite(number) else math.nan
    return out
