"""Pruners on synthetic learning curves, and the store's report path on real databases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpsearch.objective import Direction
from hpsearch.pruning import AshaPruner, MedianPruner, make_pruner
from hpsearch.spec import SpecError, parse_spec
from hpsearch.store import Store
from tests.conftest import digits_spec
from tests.unit.conftest import statements_run


@dataclass
class Study:
    """Learning curves in memory: ``curves[trial][step] = value``; answers a pruner's questions
    like the store does (others = every trial but the judged one)."""

    curves: dict[int, dict[int, float | None]] = field(default_factory=dict)
    completed: set[int] = field(default_factory=set)
    judged: int = -1
    direction: Direction = "maximize"

    def best_so_far(self, step: int) -> float | None:
        mine = [v for s, v in self.curves[self.judged].items() if s <= step and v is not None]
        if not mine:
            return None
        return max(mine) if self.direction == "maximize" else min(mine)

    def others_at(self, step: int, *, completed_only: bool) -> Sequence[float | None]:
        return [
            curve[step]
            for trial, curve in self.curves.items()
            if trial != self.judged
            and step in curve
            and (trial in self.completed or not completed_only)
        ]

    def n_completed(self) -> int:
        return len(self.completed)

    @property
    def number(self) -> int:
        return self.judged

    def numbered_others_at(self, step: int) -> Sequence[tuple[int, float | None]]:
        return [(t, c[step]) for t, c in self.curves.items() if t != self.judged and step in c]

    def run(self, pruner: Any, trial: int, curve: Sequence[float | None]) -> int:
        """Reports ``curve`` step by step as a worker would; returns the steps it ran."""
        self.judged = trial
        self.curves[trial] = {}
        for step, value in enumerate(curve, start=1):
            self.curves[trial][step] = value
            if step < len(curve) and pruner.decide(step, value, self) is not None:
                return step
        self.completed.add(trial)
        return len(curve)


def rising(quality: float, steps: int = 9) -> list[float | None]:
    """``quality * (1 - 0.5**step)``: curves of different qualities never cross."""
    return [quality * (1 - 0.5**s) for s in range(1, steps + 1)]


# -- median ----------------------------------------------------------------------------------


def test_median_prunes_a_curve_below_the_median_of_completed_trials() -> None:
    pruner = MedianPruner("dev_accuracy", "maximize", n_startup_trials=3)
    study = Study()
    for i, q in enumerate([0.9, 0.8, 0.7]):
        assert study.run(pruner, i, rising(q)) == 9
    # Below the median (0.8) from step 1: stopped at once, with the figures in the reason.
    assert study.run(pruner, 3, rising(0.5)) == 1
    study.judged = 3
    reason = pruner.decide(1, 0.25, study)
    assert reason is not None
    assert "0.25" in reason and "median 0.4" in reason and "3 completed trials" in reason
    # Above the median: runs to the end.
    assert study.run(pruner, 4, rising(0.85)) == 9


def test_median_waits_for_startup_trials_and_warmup_steps() -> None:
    pruner = MedianPruner("dev_accuracy", "maximize", n_startup_trials=2, n_warmup_steps=3)
    study = Study()
    assert study.run(pruner, 0, rising(0.9)) == 9
    # One completed trial is fewer than n_startup_trials: nobody is judged yet.
    assert study.run(pruner, 1, rising(0.1)) == 9
    # Now two have completed: judged at the first step after the warm-up (4), not before.
    assert study.run(pruner, 2, rising(0.05)) == 4


def test_median_judges_every_interval_steps_after_warmup() -> None:
    pruner = MedianPruner("m", "maximize", n_startup_trials=0, n_warmup_steps=2, interval=3)
    assert [s for s in range(1, 12) if pruner.judges(s)] == [3, 6, 9]


def test_median_uses_the_best_value_so_far_not_the_latest() -> None:
    pruner = MedianPruner("dev_loss", "minimize", n_startup_trials=1)
    study = Study(direction="minimize")
    study.run(pruner, 0, [0.5, 0.4, 0.3, 0.2])
    # Its loss rose above the median at step 3, but its best so far (0.1) is still better.
    assert study.run(pruner, 1, [0.1, 0.35, 0.45, 0.19]) == 4
    # A worse loss than the median at step 1 and never better: pruned (minimize).
    assert study.run(pruner, 2, [0.6, 0.5, 0.4, 0.3]) == 1


def test_median_prunes_a_trial_whose_metric_is_not_a_number() -> None:
    pruner = MedianPruner("dev_accuracy", "maximize", n_startup_trials=1)
    study = Study()
    study.run(pruner, 0, rising(0.5))
    assert study.run(pruner, 1, [0.9, None, 0.9]) == 2


def test_median_ignores_pruned_trials_in_the_median() -> None:
    pruner = MedianPruner("m", "maximize", n_startup_trials=1)
    study = Study()
    study.run(pruner, 0, [0.5, 0.6, 0.7])
    assert study.run(pruner, 1, [0.1, 0.1, 0.1]) == 1  # pruned: not part of later medians
    assert study.others_at(1, completed_only=True) == [0.5]
    assert study.run(pruner, 2, [0.5, 0.6, 0.7]) == 3


# -- ASHA ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_resource", "eta", "rate", "rungs"),
    [
        (1, 3, 0, [1, 3, 9, 27]),
        (1, 2, 0, [1, 2, 4, 8, 16]),
        (1, 3, 1, [3, 9, 27]),
        (2, 3, 0, [2, 6, 18]),
        (5, 4, 1, [20]),
    ],
)
def test_asha_rungs(min_resource: int, eta: int, rate: int, rungs: list[int]) -> None:
    pruner = AshaPruner("m", "maximize", min_resource, eta, rate)
    assert [s for s in range(1, 30) if pruner.judges(s)] == rungs
    assert [pruner.rung(s) for s in rungs] == list(range(len(rungs)))


def test_asha_keeps_the_top_third_of_each_rung() -> None:
    pruner = AshaPruner("dev_accuracy", "maximize", reduction_factor=3)
    study = Study()
    # The first trial has no competitor; later ones must be the best while fewer than three
    # reached the rung, then in the top third.
    assert study.run(pruner, 0, rising(0.5)) == 9
    assert study.run(pruner, 1, rising(0.4)) == 1
    assert study.run(pruner, 2, rising(0.6)) == 9
    assert study.run(pruner, 3, rising(0.55)) == 1  # 4 at rung 0: top 1 is 0.6
    assert study.run(pruner, 4, rising(0.1)) == 1
    # 6 at rung 0, top 2 = {0.6, 0.58}: goes on; at rung 1 (step 3) 3 trials, top 1 is 0.6.
    assert study.run(pruner, 5, rising(0.58)) == 3
    study.judged = 6
    study.curves[6] = {1: 0.05}
    reason = pruner.decide(1, 0.05, study)
    assert reason is not None
    assert reason.startswith("asha: dev_accuracy 0.05 at rung 0 (step 1) is not in the top 2")


def test_asha_minimizes_and_prunes_what_is_not_a_number() -> None:
    pruner = AshaPruner("dev_loss", "minimize", reduction_factor=2)
    study = Study(direction="minimize")
    assert study.run(pruner, 0, [0.5, 0.4, 0.3, 0.2]) == 4
    assert study.run(pruner, 1, [0.4, 0.3, 0.2, 0.1]) == 4  # lower loss: promoted
    assert study.run(pruner, 2, [0.9, 0.8, 0.7, 0.6]) == 1
    assert study.run(pruner, 3, [None, 0.1, 0.1, 0.1]) == 1


def test_asha_spends_far_fewer_epochs_than_running_every_trial() -> None:
    pruner = AshaPruner("dev_accuracy", "maximize", reduction_factor=3)
    study = Study()
    qualities = [(i * 0.618) % 1 for i in range(1, 28)]  # a fixed, well-spread sequence
    spent = sum(study.run(pruner, i, rising(q)) for i, q in enumerate(qualities))
    assert spent < 0.4 * 27 * 9
    assert max(qualities) == max(qualities[i] for i in study.completed)


curves_qualities = st.lists(
    st.floats(0.01, 1.0, allow_nan=False), min_size=2, max_size=25, unique=True
)


@settings(max_examples=200, deadline=None)
@given(qualities=curves_qualities, eta=st.integers(2, 4), maximize=st.booleans())
def test_asha_never_prunes_a_trial_best_at_every_step(
    qualities: list[float], eta: int, maximize: bool
) -> None:
    direction: Direction = "maximize" if maximize else "minimize"
    sign = 1 if maximize else -1
    pruner = AshaPruner("m", direction, reduction_factor=eta)
    study = Study(direction=direction)
    for i, q in enumerate(qualities):
        study.run(pruner, i, [sign * v for v in rising(q) if v is not None])
    best = max(range(len(qualities)), key=lambda i: qualities[i])
    assert best in study.completed


@settings(max_examples=200, deadline=None)
@given(qualities=curves_qualities, startup=st.integers(0, 5))
def test_median_never_prunes_a_trial_best_at_every_step(
    qualities: list[float], startup: int
) -> None:
    pruner = MedianPruner("m", "maximize", n_startup_trials=startup)
    study = Study()
    for i, q in enumerate(qualities):
        study.run(pruner, i, rising(q))
    best = max(range(len(qualities)), key=lambda i: qualities[i])
    assert best in study.completed


def test_make_pruner_defaults_to_the_objective() -> None:
    spec = parse_spec(digits_spec(pruner={"kind": "asha", "reduction_factor": 2}))
    assert make_pruner(spec.pruner, spec.objective) == AshaPruner("dev_accuracy", "maximize", 1, 2)
    spec = parse_spec(
        digits_spec(pruner={"kind": "median", "metric": "dev_loss", "direction": "minimize"})
    )
    assert make_pruner(spec.pruner, spec.objective) == MedianPruner("dev_loss", "minimize")
    assert make_pruner(parse_spec(digits_spec()).pruner, spec.objective) is None


@pytest.mark.parametrize(
    ("pruner", "field", "reason"),
    [
        ({"kind": "hyperbands"}, "pruner", "expected tags: 'none', 'median', 'asha', 'hyperband'"),
        (
            {"kind": "asha", "reduction_factor": 1},
            "pruner.reduction_factor",
            "greater than or equal to 2",
        ),
        ({"kind": "asha", "min_resource": 0}, "pruner.min_resource", "greater than or equal to 1"),
        ({"kind": "median", "interval": 0}, "pruner.interval", "greater than or equal to 1"),
        ({"kind": "median", "n_warmup": 3}, "pruner.n_warmup", "unknown key"),
        ({"kind": "median", "metric": "dev_loss"}, "pruner.direction", "required when"),
    ],
)
def test_pruner_spec_errors_name_the_field(pruner: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(digits_spec(pruner=pruner))
    errors = {e.field: e.message for e in info.value.errors}
    assert field in errors, errors
    assert reason in errors[field]


# -- the store's report path -----------------------------------------------------------------


def _curve_reads(statements: list[str]) -> list[str]:
    """The statements that read other trials' curves (the report's own writes excluded)."""
    return [s for s in statements if "JOIN trials" in s and "trial_intermediates" in s]


def test_store_prunes_by_asha_reading_only_the_rung_step(store: Store) -> None:
    spec = digits_spec(
        budget={"max_trials": 10, "parallelism": 10},
        pruner={"kind": "asha", "min_resource": 1, "reduction_factor": 2},
        task={"trainer": "mlp_classifier", "epochs": 4},
    )
    study = store.create_study(spec)
    claims = [store.claim(f"w{i}", study_id=study.id) for i in range(3)]
    a, b, c = (x for x in claims if x is not None)
    workers = {a.trial_id: "w0", b.trial_id: "w1", c.trial_id: "w2"}
    # Three trials climbing to step 2 in lockstep, each the best at its rung so far.
    for step, values in [(1, (0.5, 0.6, 0.7)), (2, (0.6, 0.7, 0.8))]:
        for claim, value in zip((a, b, c), values, strict=True):
            worker = workers[claim.trial_id]
            metrics = {"dev_accuracy": value, "dev_loss": 1 - value}
            assert not store.report(claim.holder(worker), step, metrics).should_stop
    with statements_run(store) as statements:
        # Step 3 is no rung (1, 2, 4): nothing about other trials is read.
        store.report(a.holder("w0"), 3, {"dev_accuracy": 0.61})
    assert _curve_reads(statements) == []
    # A fourth trial at rung 1 (step 2) with 0.65: the top half of {0.6, 0.7, 0.8, 0.65} is
    # {0.8, 0.7}, so it stops; the decision reads step 2 alone.
    d = store.claim("w3", study_id=study.id)
    assert d is not None
    assert not store.report(d.holder("w3"), 1, {"dev_accuracy": 0.9}).should_stop
    with statements_run(store) as statements:
        ack = store.report(d.holder("w3"), 2, {"dev_accuracy": 0.65})
    assert ack.should_stop
    assert ack.reason is not None and ack.reason.startswith("asha: dev_accuracy 0.65 at rung 1")
    (read,) = _curve_reads(statements)
    assert "trial_intermediates.step =" in read and "trial_intermediates.step <" not in read
    # The worker completes it as pruned; its history says why.
    store.complete(d.holder("w3"), {"dev_accuracy": 0.65}, pruned=True)
    view = store.trial(d.trial_id)
    assert view.trial.state == "pruned"
    assert [e.detail for e in view.events if e.kind == "prune"] == [ack.reason]
    assert store.get_study(study.id).counts.pruned == 1


def test_store_median_counts_only_completed_trials(store: Store) -> None:
    spec = digits_spec(
        budget={"max_trials": 10, "parallelism": 10},
        pruner={"kind": "median", "n_startup_trials": 1},
        task={"trainer": "mlp_classifier", "epochs": 3},
    )
    study = store.create_study(spec)
    first = store.claim("w0", study_id=study.id)
    second = store.claim("w1", study_id=study.id)
    assert first is not None and second is not None
    # No trial has completed: the running one's curve is no reference.
    store.report(first.holder("w0"), 1, {"dev_accuracy": 0.9})
    assert not store.report(second.holder("w1"), 1, {"dev_accuracy": 0.1}).should_stop
    for step in (2, 3):
        store.report(first.holder("w0"), step, {"dev_accuracy": 0.9})
    store.complete(first.holder("w0"), {"dev_accuracy": 0.9})
    ack = store.report(second.holder("w1"), 2, {"dev_accuracy": 0.2})
    assert ack.should_stop and ack.reason is not None and "median 0.9" in ack.reason
    # A NaN reported (stored as missing) is pruned outright.
    third = store.claim("w2", study_id=study.id)
    assert third is not None
    ack = store.report(third.holder("w2"), 1, {"dev_accuracy": math.nan})
    assert ack.should_stop and "not a number" in (ack.reason or "")
    # The last step is never pruned: the trial is done anyway.
    fourth = store.claim("w3", study_id=study.id)
    assert fourth is not None
    ack = store.report(fourth.holder("w3"), 3, {"dev_accuracy": 0.0})
    assert not ack.should_stop


def test_store_without_pruner_never_stops_a_trial(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 2, "parallelism": 2}))
    first = store.claim("w0", study_id=study.id)
    second = store.claim("w1", study_id=study.id)
    assert first is not None and second is not None
    for step in (1, 2, 3):
        store.report(first.holder("w0"), step, {"dev_accuracy": 0.9})
    store.complete(first.holder("w0"), {"dev_accuracy": 0.9})
    with statements_run(store) as statements:
        ack = store.report(second.holder("w1"), 1, {"dev_accuracy": 0.0})
    assert not ack.should_stop
    assert _curve_reads(statements) == []
