"""Trials held ahead (``hpsearch worker --prefetch``), on real SQLite and PostgreSQL: an
ordinary lease, given only where holding it costs nothing."""

from __future__ import annotations

from datetime import timedelta

from hpsearch.store import Store
from hpsearch.store.worker_requests import Where, claim
from tests.conftest import digits_spec
from tests.unit.test_store import _expire

DONE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def test_a_held_trial_of_a_worker_that_died_expires_and_is_retried(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 2, "parallelism": 3}))
    running = store.claim("dies")
    held = store.claim("dies", ahead=True)
    assert running is not None and held is not None and held.trial_id != running.trial_id
    _expire(store, held.trial_id)
    retried = store.claim("survives")
    assert retried is not None
    assert (retried.trial_id, retried.attempt) == (held.trial_id, 2)
    events = [e.kind for e in store.trial(held.trial_id).events]
    assert events == ["claimed", "lease_expired", "claimed"]


def test_held_trials_leave_room_and_never_pass_the_budget(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 4, "parallelism": 3}))
    first = store.claim("a")
    assert first is not None
    assert store.claim("a", ahead=True) is not None  # 2 leased: room for a third remains
    # Held, a third would leave nothing for a worker without a trial.
    assert store.claim("a", ahead=True) is None
    third = store.claim("b")
    assert third is not None
    store.complete(first.holder("a"), DONE)
    store.complete(third.holder("b"), DONE)
    assert store.claim("a", ahead=True) is not None  # the fourth and last
    assert store.claim("b", ahead=True) is None
    assert store.claim("b") is None
    assert [t.number for t in store.trials(study.id)] == [0, 1, 2, 3]


def test_nothing_is_held_ahead_for_a_sampler_that_learns_from_results(store: Store) -> None:
    tpe = {"kind": "tpe", "seed": 0}
    study = store.create_study(digits_spec(sampler=tpe, budget={"max_trials": 9, "parallelism": 9}))
    assert store.claim("w", study_id=study.id) is not None
    held = claim(store, "w", Where(study_id=study.id, ahead=True))
    assert (held.job, held.how) == (None, "none")
    assert store.claim("w", study_id=study.id) is not None


def test_a_held_trial_s_start_is_when_its_worker_started_it(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 3, "parallelism": 3}))
    running, held = store.claim("w"), store.claim("w", ahead=True)
    assert running is not None and held is not None
    claimed_at = store.trial(held.trial_id).trial.started_at
    assert claimed_at is not None
    started = claimed_at + timedelta(seconds=5)
    store.held_trial_started(held.trial_id, "other", started)  # not its holder: nothing
    assert store.trial(held.trial_id).trial.started_at == claimed_at
    store.held_trial_started(held.trial_id, "w", started)
    assert store.trial(held.trial_id).trial.started_at == started
    _expire(store, held.trial_id)
    retried = store.claim("v")
    assert retried is not None and retried.attempt == 2
    store.held_trial_started(held.trial_id, "v", started + timedelta(seconds=5))
    assert store.trial(held.trial_id).trial.started_at == started  # a retry keeps its first start
