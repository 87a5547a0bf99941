"""One optimizing metric, any number of satisficing metrics, and the one rule for "best".

A trial that misses any satisficing threshold is *infeasible* and is never best, whatever its
score. Among feasible trials the optimizing metric decides; infeasible trials rank after every
feasible one, by total violation. Ties go to the earlier trial so rankings are deterministic.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from hpsearch.states import TrialState


def finite(value: object) -> float | None:
    """A metric's value as recorded: a finite number as a float; NaN, ±inf, a boolean or
    anything else as ``None`` (not measured). The one rule for every metric the store keeps."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def finite_metrics(metrics: Mapping[str, object]) -> dict[str, float | None]:
    """Metrics as stored: numbers kept, NaN and ±inf recorded as missing (``None``); entries
    that are not numbers at all (``None`` included) left out."""
    return {
        name: finite(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


Direction = Literal["maximize", "minimize"]
ConstraintOp = Literal["<=", "<", ">=", ">", "=="]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Constraint:
    """A satisficing metric: ``metric op threshold`` must hold."""

    metric: str
    op: ConstraintOp
    threshold: float

    def violation(self, metrics: Mapping[str, float | None]) -> float:
        """How far ``metrics`` miss this constraint; 0 when met, ``inf`` when unmeasured."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return math.inf
        if _OPS[self.op](value, self.threshold):
            return 0.0
        # Relative to the threshold so that violations of metrics in different units
        # (milliseconds, parameter counts) add up sensibly.
        return abs(value - self.threshold) / max(abs(self.threshold), 1e-12)

    def describe(self) -> str:
        symbol = {"<=": "≤", ">=": "≥"}.get(self.op, self.op)
        return f"{self.metric} {symbol} {self.threshold:g}"


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction
    constraints: tuple[Constraint, ...] = ()

    def evaluate(self, metrics: Mapping[str, float | None]) -> Evaluation:
        """The objective value, feasibility and violation of a finished trial's metrics."""
        raw = metrics.get(self.metric)
        value = raw if raw is not None and math.isfinite(raw) else None
        violations = {c.describe(): c.violation(metrics) for c in self.constraints}
        broken = tuple(name for name, v in violations.items() if v > 0)
        return Evaluation(
            value=value,
            feasible=not broken,
            violation=sum(violations.values()),
            broken=broken,
        )

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b

    def describe(self) -> str:
        text = f"{self.direction} {self.metric}"
        if self.constraints:
            text += " subject to " + ", ".join(c.describe() for c in self.constraints)
        return text


@dataclass(frozen=True)
class Evaluation:
    value: float | None
    feasible: bool
    violation: float
    broken: tuple[str, ...]


class Rankable(Protocol):
    """What ranking needs to know of a finished trial."""

    @property
    def number(self) -> int: ...
    @property
    def value(self) -> float | None: ...
    @property
    def feasible(self) -> bool: ...
    @property
    def violation(self) -> float: ...


T = TypeVar("T", bound=Rankable)


def rank_key(trial: Rankable, direction: Direction) -> tuple[int, float, float, int]:
    """Sort key: smaller is better. Feasible before infeasible, then objective, then number;
    a trial without a value (diverged) after both."""
    missing = trial.value is None
    value = math.inf if trial.value is None else trial.value
    signed = value if direction == "minimize" or missing else -value
    if trial.feasible and not missing:
        return (0, signed, 0.0, trial.number)
    violation = trial.violation if math.isfinite(trial.violation) else math.inf
    if missing:  # diverged: below every trial with a finite value, feasible or not
        return (2, violation, 0.0, trial.number)
    return (1, violation, signed, trial.number)


def diverged(state: str, value: float | None) -> bool:
    """Whether a trial diverged: it completed with a NaN or infinite objective (stored as no
    value; a trial that never reported its objective fails instead)."""
    return state == TrialState.COMPLETED and value is None


def rank(trials: Iterable[T], direction: Direction) -> list[T]:
    return sorted(trials, key=lambda t: rank_key(t, direction))


def best(trials: Sequence[T], direction: Direction) -> T | None:
    """The best *feasible* trial, or ``None`` when no trial meets every constraint."""
    ranked = rank((t for t in trials if t.feasible and t.value is not None), direction)
    return ranked[0] if ranked else None
