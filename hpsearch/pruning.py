"""Pruners: stop a trial early when its learning curve says it will not win.

A pruner is a pure policy, like a sampler: it does no I/O. When a worker reports a step, the
store asks the study's pruner whether that step is judged at all (:meth:`Pruner.judges`); only
then does it answer the questions the pruner asks through :class:`Curves` — each one about a
single step, so a report never reads whole learning curves. ``decide`` returns the reason to
stop, or ``None``; the worker stops the trial at that report and it is recorded ``pruned``.

Steps are the worker's report steps (epochs, from 1). A value of ``None`` is a metric the
trial reported as NaN or infinite: such a trial has diverged and is pruned when judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hpsearch.objective import Direction
from hpsearch.spec import (
    HyperbandPrunerSpec,
    MedianPrunerSpec,
    NoPrunerSpec,
    ObjectiveSpec,
    PrunerSpec,
)


class Curves(Protocol):
    """What a pruner may ask about the study's curves of its metric (the store answers in SQL).

    "Others" are the study's trials other than the one being judged.
    """

    def best_so_far(self, step: int) -> float | None:
        """The judged trial's best value over its steps up to ``step`` (this one included),
        ignoring steps where it was missing or not a number; None if it never was one."""
        ...

    def others_at(self, step: int, *, completed_only: bool) -> Sequence[float | None]:
        """Each other trial's value at exactly ``step``, for those that reported it."""
        ...

    def n_completed(self) -> int:
        """How many of the study's trials have completed (not pruned, not failed)."""
        ...

    @property
    def number(self) -> int:
        """The judged trial's number (Hyperband's brackets are by number)."""
        ...

    def numbered_others_at(self, step: int) -> Sequence[tuple[int, float | None]]:
        """``(number, value)`` of each other trial that reported exactly ``step``."""
        ...


class Pruner(Protocol):
    @property
    def metric(self) -> str: ...

    @property
    def direction(self) -> Direction: ...

    def judges(self, step: int) -> bool:
        """Whether a report at ``step`` is judged at all (cheap: no data needed)."""
        ...

    def decide(self, step: int, value: float | None, curves: Curves) -> str | None:
        """The reason to stop the trial that reported ``value`` at ``step``, or None."""
        ...


def _worse(a: float, b: float, direction: Direction) -> bool:
    return a < b if direction == "maximize" else a > b


@dataclass(frozen=True)
class MedianPruner:
    """Optuna's median rule: stop a trial whose best value so far is worse than the median of
    the completed trials' values at the same step."""

    metric: str
    direction: Direction
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval: int = 1

    def judges(self, step: int) -> bool:
        return step > self.n_warmup_steps and (step - self.n_warmup_steps - 1) % self.interval == 0

    def decide(self, step: int, value: float | None, curves: Curves) -> str | None:
        if not self.judges(step) or curves.n_completed() < max(self.n_startup_trials, 1):
            return None
        if value is None:
            return f"median pruner: {self.metric} is not a number at step {step}"
        best = curves.best_so_far(step)
        if best is None:
            return None
        others = [v for v in curves.others_at(step, completed_only=True) if v is not None]
        if not others:
            return None
        median = statistics.median(others)
        if not _worse(best, median, self.direction):
            return None
        return (
            f"median pruner: best {self.metric} so far {best:.4g} at step {step} is worse than "
            f"the median {median:.4g} of {len(others)} completed trials at that step"
        )


@dataclass(frozen=True)
class AshaPruner:
    """Asynchronous successive halving (Li et al., 2018; Optuna's SuccessiveHalvingPruner).

    Rung ``r`` sits at step ``min_resource * reduction_factor ** (min_early_stopping_rate + r)``.
    A trial reaching a rung goes on only if its value there is among the top
    ``1/reduction_factor`` of the values every trial of the study reported at that rung so far
    (itself included; while fewer than ``reduction_factor`` have, only the best goes on). No
    trial waits for others: the earliest trials are judged against fewer competitors.
    """

    metric: str
    direction: Direction
    min_resource: int = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0

    def rung(self, step: int) -> int | None:
        """The rung whose step is ``step``, or None between rungs."""
        at = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        r = 0
        while at < step:
            at *= self.reduction_factor
            r += 1
        return r if at == step else None

    def judges(self, step: int) -> bool:
        return self.rung(step) is not None

    def decide(self, step: int, value: float | None, curves: Curves) -> str | None:
        rung = self.rung(step)
        if rung is None:
            return None
        if value is None:
            return f"asha: {self.metric} is not a number at rung {rung} (step {step})"
        return self.verdict(step, value, curves.others_at(step, completed_only=False))

    def verdict(self, step: int, value: float, others: Sequence[float | None]) -> str | None:
        """The rung's rule for ``value`` at rung step ``step`` against ``others``' values there
        (Hyperband runs it on the trials of one bracket)."""
        rung = self.rung(step)
        competing = sorted(
            [*(v for v in others if v is not None), value], reverse=self.direction == "maximize"
        )
        promoted = max(len(competing) // self.reduction_factor, 1)
        threshold = competing[promoted - 1]  # the worst value that still goes on
        if not _worse(value, threshold, self.direction):
            return None
        return (
            f"asha: {self.metric} {value:.4g} at rung {rung} (step {step}) is not in the top "
            f"{promoted} of {len(competing)} trials there (needs {threshold:.4g})"
        )


def make_pruner(
    spec: PrunerSpec, objective: ObjectiveSpec, *, study_name: str = "", epochs: int = 1
) -> Pruner | None:
    """The study's pruner, judging ``spec.metric`` (default: the objective's metric).

    Hyperband assigns trials to brackets by ``study_name`` and number, as Optuna does; its
    ``max_resource`` defaults to the task's ``epochs``.
    """
    if isinstance(spec, NoPrunerSpec):
        return None
    metric = spec.metric or objective.metric
    direction = spec.direction or objective.direction
    if isinstance(spec, HyperbandPrunerSpec):
        # Imported here: the Hyperband module builds on this one's successive halving.
        from hpsearch.pruning_hyperband import HyperbandPruner

        return HyperbandPruner(
            metric,
            direction,
            study_name,
            spec.min_resource,
            spec.max_resource or max(epochs, spec.min_resource),
            spec.reduction_factor,
        )
    if isinstance(spec, MedianPrunerSpec):
        return MedianPruner(
            metric, direction, spec.n_startup_trials, spec.n_warmup_steps, spec.interval
        )
    return AshaPruner(
        metric, direction, spec.min_resource, spec.reduction_factor, spec.min_early_stopping_rate
    )
