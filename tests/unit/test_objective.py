"""The one ranking rule: infeasible trials are never best; ties are deterministic."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from hpsearch.objective import Constraint, Objective, best, rank


@dataclass(frozen=True)
class T:
    number: int
    value: float | None
    feasible: bool
    violation: float


LATENCY = Objective("dev_accuracy", "maximize", (Constraint("latency_ms", "<=", 100),))


def scored(number: int, **metrics: float) -> T:
    e = LATENCY.evaluate(metrics)
    return T(number, e.value, e.feasible, e.violation)


def test_course_example_b_wins() -> None:
    a = scored(0, dev_accuracy=0.90, latency_ms=80)
    b = scored(1, dev_accuracy=0.92, latency_ms=95)
    c = scored(2, dev_accuracy=0.95, latency_ms=1500)
    assert not c.feasible
    assert best([a, b, c], "maximize") == b
    assert rank([a, b, c], "maximize") == [b, a, c]


def test_unmeasured_constraint_metric_is_infeasible() -> None:
    t = scored(0, dev_accuracy=0.99)
    assert not t.feasible and math.isinf(t.violation)
    assert best([t], "maximize") is None


def test_describe_in_plain_words() -> None:
    assert LATENCY.describe() == "maximize dev_accuracy subject to latency_ms ≤ 100"


def test_infeasible_rank_by_violation() -> None:
    near = scored(0, dev_accuracy=0.1, latency_ms=110)
    far = scored(1, dev_accuracy=0.99, latency_ms=900)
    assert rank([far, near], "maximize") == [near, far]


trials = st.lists(
    st.builds(
        T,
        number=st.integers(0, 10_000),
        value=st.one_of(st.none(), st.floats(-1e6, 1e6)),
        feasible=st.booleans(),
        violation=st.floats(0, 1e6),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda t: t.number,
)


@given(trials, st.sampled_from(["maximize", "minimize"]))
def test_best_is_feasible_and_unbeaten(ts: list[T], direction: str) -> None:
    b = best(ts, direction)  # type: ignore[arg-type]
    feasible = [t for t in ts if t.feasible and t.value is not None]
    if not feasible:
        assert b is None
        return
    assert b is not None and b.feasible
    values = [t.value for t in feasible]
    assert b.value == (max(values) if direction == "maximize" else min(values))
    # Ties go to the earliest trial.
    assert b.number == min(t.number for t in feasible if t.value == b.value)


@given(trials, st.sampled_from(["maximize", "minimize"]))
def test_ranking_is_deterministic_and_feasible_first(ts: list[T], direction: str) -> None:
    r1 = rank(ts, direction)  # type: ignore[arg-type]
    r2 = rank(list(reversed(ts)), direction)  # type: ignore[arg-type]
    assert r1 == r2
    flags = [t.feasible and t.value is not None for t in r1]
    assert flags == sorted(flags, reverse=True)
