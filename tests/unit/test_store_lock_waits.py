"""What a PostgreSQL statement sees after it waited for a study's row lock.

In READ COMMITTED a statement reads every table as it was when the statement began; waiting
for a row lock re-reads only the locked row. A claim or a completion that queued behind
another transaction on its study must still count the trials that transaction claimed and
rank against the best trial it set. Each test holds the study lock in a transaction of its
own, starts the claim or completion in a thread, waits until PostgreSQL reports it waiting
for that lock, and only then commits. A claim that reads the running studies and then takes a
queued trial in a later statement must also see a pause committed in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from hpsearch.store import Database, Store, claims, completion, ending
from hpsearch.store.hints import RulesCache
from hpsearch.store.rules import StudyKey
from tests.conftest import digits_spec, wait_for

pytestmark = pytest.mark.postgres

GOOD = {"dev_accuracy": 0.9, "latency_ms": 1.0}
WORSE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    store = Store(Database(postgres_url), lease_seconds=60)
    yield store
    store.db.dispose()


@pytest.fixture
def other_thread() -> Iterator[Callable[..., Future[Any]]]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit


def _waits_for_a_lock(store: Store) -> Callable[[], bool]:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def waiting() -> bool:
        with store.db.read() as s:
            return bool(s.scalar(query))

    return waiting


def test_a_claim_that_waited_counts_the_trial_the_lock_holder_claimed(
    store: Store, other_thread: Callable[..., Future[Any]]
) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 1}))
    with store.db.write() as s:
        first = claims.claim(s, _asks("w1"), RulesCache().get, _running(s, study.id))
        assert first is not None
        second = other_thread(store.claim, "w2", study_id=study.id)
        wait_for(_waits_for_a_lock(store), 30, "the second claim to wait for the study")
    # Parallelism 1 is taken by the first claim, committed while the second waited.
    assert second.result(timeout=30) is None
    running = store.trials(study.id, states=["running"])
    assert [t.id for t in running] == [first.trial_id]


@pytest.mark.parametrize("best_is_new", [False, True], ids=["best-running", "best-unseen"])
def test_a_completion_that_waited_ranks_against_the_best_the_lock_holder_set(
    store: Store, other_thread: Callable[..., Future[Any]], best_is_new: bool
) -> None:
    """The holder completes a better trial; the waiting completion must not take its place.
    ``best_is_new``: the holder also claimed that trial, so the waiting statement, begun
    before, cannot see it at all."""
    study = store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 2}))
    rules = RulesCache()
    worse = store.claim("w-worse", study_id=study.id)
    better = None if best_is_new else store.claim("w-better", study_id=study.id)
    assert worse is not None
    with store.db.write() as s:
        if better is None:
            better = claims.claim(s, _asks("w-better"), rules.get, _running(s, study.id))
            assert better is not None
        holder = better.holder("w-better")
        completion.complete(s, ending.Completion(holder, GOOD), rules.get)
        later = other_thread(store.complete, worse.holder("w-worse"), WORSE)
        wait_for(_waits_for_a_lock(store), 30, "the second completion to wait for the study")
    assert later.result(timeout=30).state == "completed"
    view = store.get_study(study.id)
    assert view.study.best_trial_id == better.trial_id
    assert view.study.n_completed == 2


@pytest.mark.parametrize("path", ["one-statement", "transaction"])
def test_a_claim_takes_nothing_from_a_study_paused_after_it_read_the_running_ones(
    store: Store, path: str
) -> None:
    """A claim reads the running studies, then takes a queued trial in a later statement; a
    pause committed in between (here: while the claim asks for the study's rules) must leave
    the queue untouched."""
    study = store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 10}))
    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    queued = store.enqueue(study.id, guess)
    rules = RulesCache()

    def pausing_rules(session: Any, key: Any) -> Any:
        store.set_study_state(study.id, "pause")
        return rules.get(session, key)

    if path == "one-statement":
        with store.db.autocommit() as connection:
            running = claims.running_studies(connection, study.id)
            got = claims.claim_queued_at_once(connection, _asks("w"), pausing_rules, running)
    else:
        with store.db.write() as s:
            got = claims.claim(s, _asks("w"), pausing_rules, _running(s, study.id))
    assert got is None
    assert store.trial(queued.id).trial.state == "queued"
    store.set_study_state(study.id, "resume")
    resumed = store.claim("w", study_id=study.id)
    assert resumed is not None and resumed.trial_id == queued.id


def test_a_guess_takes_back_only_the_trials_sampled_ahead_above_one_claimed_meanwhile(
    store: Store, other_thread: Callable[..., Future[Any]]
) -> None:
    """A claim holds a trial sampled ahead (number 3, its neighbours 1 and 2 taken by other
    claims at that moment) while a user enqueues a guess. The guess must not leave numbers
    unused below a claimed one: those would keep ``max_trials`` from ever being reached."""
    study = store.create_study(digits_spec(budget={"max_trials": 100, "parallelism": 100}))
    first = store.claim("w1", study_id=study.id)  # 0 runs, 1 to AHEAD - 1 are queued
    assert first is not None and first.number == 0
    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    with store.db.write() as s:
        s.execute(
            text(
                "UPDATE trials SET state = 'running', attempt = 1, worker_id = 'w2' "
                "WHERE study_id = :study AND number = 3"
            ),
            {"study": study.id},
        )
        enqueued = other_thread(store.enqueue, study.id, guess)
        wait_for(_waits_for_a_lock(store), 30, "the guess to wait for the claimed trial")
    assert enqueued.result(timeout=30).number == 4
    queued = store.trials(study.id, states=["queued"])
    assert [t.number for t in queued] == [1, 2, 4]
    later = [store.claim(f"w{i}", study_id=study.id) for i in range(3, 7)]
    assert [c.number for c in later if c is not None] == [1, 2, 4, 5]
    numbers = sorted(t.number for t in store.trials(study.id, limit=100))
    assert numbers == list(range(len(numbers)))


def _running(s: Session, study_id: int) -> list[StudyKey]:
    return claims.running_studies(s.connection(), study_id)


def _asks(worker_id: str) -> claims.ClaimRequest:
    return claims.ClaimRequest(worker_id, timedelta(minutes=1))
