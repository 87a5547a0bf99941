"""Everything the store does, at once, from many threads, on SQLite and PostgreSQL.

Claims (sampled and queued), reports, heartbeats, completions, failures, leases expiring under
a short lease, study pause/resume, enqueue, stopping trials, and a target value that ends the
study mid-flight (stopping its running trials under the study lock): on PostgreSQL these take
row locks in many orders unless the store keeps one (study before trial, studies by id). A
deadlock would surface here as an error from the database; nothing but the refusals the API
maps to 409 may happen, and every counter must add up at the end.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from hpsearch.errors import InvalidState, LeaseLost
from hpsearch.store import Database, Store
from hpsearch.store.models import Study, Trial, TrialEvent
from tests.conftest import digits_spec

EXPECTED = (LeaseLost, InvalidState)


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database, as two server processes would be: one with a normal
    lease, one whose leases expire almost at once (so requeues race with everything)."""
    steady = Store(Database(database_url), lease_seconds=60)
    hasty = Store(Database(database_url), lease_seconds=0.05)
    yield steady, hasty
    steady.db.dispose()
    hasty.db.dispose()


def _run(threads: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as e:
            errors.append(e)

    running = [threading.Thread(target=guarded, args=(body,)) for body in threads]
    for t in running:
        t.start()
    for t in running:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in running), "a thread hung: a lock was never released"
    return errors


@pytest.mark.slow
def test_everything_at_once_never_deadlocks_and_the_counters_add_up(
    stores: tuple[Store, Store],
) -> None:
    steady, hasty = stores
    # Study 1 ends by its target value while trials still run; study 2 by its trial count.
    ends_by_target = steady.create_study(
        digits_spec(budget={"max_trials": 400, "parallelism": 8, "target_value": 0.97})
    )
    ends_by_count = steady.create_study(digits_spec(budget={"max_trials": 60, "parallelism": 8}))
    studies = (ends_by_target.id, ends_by_count.id)
    stop = threading.Event()

    def worker(i: int) -> Callable[[], None]:
        def body() -> None:
            rng = random.Random(i)
            store = hasty if i % 4 == 0 else steady
            name = f"w{i}"
            while not stop.is_set():
                c = store.claim(name, study_id=rng.choice((*studies, None)))
                if c is None:
                    if not steady.has_open_studies():
                        return
                    continue
                try:
                    for step in (1, 2):
                        store.report(c.holder(name), step, {"dev_accuracy": 0.1})
                    store.heartbeat(c.holder(name))
                    if rng.random() < 0.1:
                        store.fail(c.holder(name), "RuntimeError: boom")
                    else:
                        accuracy = 0.98 if c.study_id == studies[0] and c.number > 40 else 0.5
                        metrics = {"dev_accuracy": accuracy, "latency_ms": 1.0}
                        store.complete(c.holder(name), metrics)
                except EXPECTED:
                    pass  # our lease ran out (the hasty store) or the study moved on

        return body

    def controller() -> None:
        rng = random.Random(99)
        guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
        while not stop.is_set() and steady.has_open_studies():
            study_id = rng.choice(studies)
            action = rng.choice(("pause", "resume", "enqueue", "stop_trial"))
            try:
                if action == "enqueue":
                    steady.enqueue(study_id, guess)
                elif action == "stop_trial":
                    running = steady.trials(study_id, states=["running"], limit=5)
                    if running:
                        steady.stop_trial(rng.choice(running).id)
                else:
                    steady.set_study_state(study_id, action)
            except EXPECTED:
                pass
        for study_id in studies:  # leave nothing paused
            with contextlib.suppress(EXPECTED):
                steady.set_study_state(study_id, "resume")

    try:
        errors = _run([worker(i) for i in range(12)] + [controller])
    finally:
        stop.set()
    assert not errors, errors[:3]

    with steady.db.read() as s:
        for study in s.scalars(select(Study).where(Study.id.in_(studies))):
            states = Counter(
                dict(
                    s.execute(
                        select(Trial.state, func.count())
                        .where(Trial.study_id == study.id)
                        .group_by(Trial.state)
                    ).all()
                )
            )
            assert study.state in ("completed", "stopped"), (study.id, study.state)
            assert states["queued"] == 0, (study.id, study.reason, states)
            # The best trial ranks first however the completions interleaved: by value, then
            # by number (every trial here is feasible).
            first = s.scalars(
                select(Trial.id)
                .where(Trial.study_id == study.id, Trial.state == "completed")
                .order_by(Trial.value.desc(), Trial.number)
                .limit(1)
            ).first()
            assert study.best_trial_id == first
            assert (study.n_completed, study.n_pruned, study.n_failed) == (
                states["completed"],
                states["pruned"],
                states["failed"],
            ), (study.id, states)
            # Every number is used once; a number without a trial was sampled ahead and
            # dropped unrun when its study ended (claims.AHEAD).
            numbers = list(s.scalars(select(Trial.number).where(Trial.study_id == study.id)))
            assert len(set(numbers)) == len(numbers) == sum(states.values())
            assert max(numbers) < study.next_number
        # A trial is claimed at most once per attempt.
        claims = s.execute(
            select(TrialEvent.trial_id, TrialEvent.attempt, func.count())
            .where(TrialEvent.kind == "claimed")
            .group_by(TrialEvent.trial_id, TrialEvent.attempt)
        ).all()
        assert claims and max(n for _, _, n in claims) == 1
    target = steady.get_study(ends_by_target.id).study
    assert target.reason is not None and "target value" in target.reason
