"""Outcomes of training that are not a crash, without torch (the claim loop imports them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsearch import tasks


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: this configuration cannot train (lr too high, most
    often). Not a crash: the trial completes as *diverged* (see :meth:`result`), a real
    outcome of the search that ranks below every finite value."""

    def __init__(self, message: str, metrics: Mapping[str, float] | None = None) -> None:
        super().__init__(message)
        self.metrics = dict(metrics or {})

    def result(self, task: Mapping[str, Any]) -> DivergedResult:
        """What the trial completes with: every metric it would report, none of them a
        number (a model with NaN weights measures nothing), so its objective is missing."""
        names = {*self.metrics, *(tasks.reported_metrics(task) or ())}
        return DivergedResult({name: None for name in sorted(names)})


@dataclass
class DivergedResult:
    metrics: dict[str, float | None] = field(default_factory=dict)
    stopped_early: bool = False


def setup_problem(error: BaseException) -> str | None:
    """Why ``error`` is this worker's setup and not the trial's (a missing dataset, code that
    will not import here, no CUDA), in words; None for a crash of the trial itself.

    Such a trial is handed back, not failed: another worker may well run it."""
    if isinstance(error, FileNotFoundError):
        return f"a file is missing on this worker: {error}"
    if isinstance(error, ImportError):
        return f"the study's code cannot be imported on this worker: {error}"
    text = str(error)
    if isinstance(error, RuntimeError) and _NO_CUDA.search(text):
        return f"CUDA is unavailable on this worker: {text.splitlines()[0]}"
    return None


# torch's words for a machine without a usable GPU (not a trial's own CUDA error).
_NO_CUDA = re.compile(
    r"CUDA.*not available|no CUDA GPUs|no NVIDIA driver|not compiled with CUDA", re.IGNORECASE
)


class HandBackNow(BaseException):
    """Raised in the training thread by a second signal: hand the trial back without waiting
    for the epoch to end. A BaseException so that no ``except Exception`` in training code
    swallows it."""


def short(params: Mapping[str, Any]) -> str:
    """A trial's params in one line, for the worker's log."""
    return ", ".join(f"{k}={number_text(v)}" for k, v in params.items())


def number_text(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
