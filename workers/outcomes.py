"""Outcomes of training that are not a crash, without torch (the claim loop imports them)."""

from __future__ import annotations

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
