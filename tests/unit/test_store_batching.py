"""The queue's batched paths on real SQLite and PostgreSQL: steps held back and sent together,
steps carried by a completion, trials sampled ahead, the claim made with a completion."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from hpsearch.errors import LeaseLost
from hpsearch.samplers import make_sampler
from hpsearch.spec import parse_spec
from hpsearch.store import Database, Holder, Store
from hpsearch.store.claims import AHEAD
from hpsearch.store.hints import Recent, Throttle
from hpsearch.store.models import Trial
from tests.conftest import digits_spec
from tests.unit.conftest import statements_run

DONE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def _curve(store: Store, trial_id: int) -> dict[int, float | None]:
    return {p.step: p.metrics["dev_accuracy"] for p in store.trial(trial_id).intermediates}


def test_held_back_steps_are_stored_with_the_report_that_carries_them(store: Store) -> None:
    store.create_study(digits_spec())
    c = store.claim("w")
    assert c is not None
    earlier = [(1, {"dev_accuracy": 0.1}), (2, {"dev_accuracy": 0.2})]
    ack = store.report(c.holder("w"), 3, {"dev_accuracy": 0.3}, earlier)
    assert not ack.should_stop
    assert _curve(store, c.trial_id) == {1: 0.1, 2: 0.2, 3: 0.3}
    assert store.trial(c.trial_id).trial.last_step == 3


def test_a_completion_stores_the_steps_it_carries_then_ends_the_trial(store: Store) -> None:
    study = store.create_study(digits_spec())
    c = store.claim("w")
    assert c is not None
    store.report(c.holder("w"), 1, {"dev_accuracy": 0.1})
    # Step 2 resent with a new value replaces the stored one; the later of two copies wins.
    steps = [(2, {"dev_accuracy": 0.0}), (2, {"dev_accuracy": 0.2}), (3, {"dev_accuracy": 0.3})]
    done = store.complete(c.holder("w"), DONE, steps=steps)
    assert (done.state, done.value, done.feasible, done.last_step) == ("completed", 0.5, True, 3)
    assert _curve(store, c.trial_id) == {1: 0.1, 2: 0.2, 3: 0.3}
    view = store.get_study(study.id)
    assert view.counts.completed == 1 and view.best is not None and view.best.id == c.trial_id
    assert [e.kind for e in store.trial(c.trial_id).events] == ["claimed", "completed"]


def test_a_completion_refused_for_a_lost_lease_stores_none_of_its_steps(store: Store) -> None:
    store.create_study(digits_spec())
    c = store.claim("w")
    assert c is not None
    with pytest.raises(Exception, match="no longer leased"):
        store.complete(c.holder("impostor"), DONE, steps=[(1, {"dev_accuracy": 1})])
    assert _curve(store, c.trial_id) == {}
    assert store.get_study(c.study_id).counts.completed == 0


def test_an_infeasible_completion_is_counted_and_never_best(store: Store) -> None:
    study = store.create_study(digits_spec())
    a, b = store.claim("a"), store.claim("b")
    assert a is not None and b is not None
    store.complete(a.holder("a"), {"dev_accuracy": 0.9, "latency_ms": 500.0})
    store.complete(b.holder("b"), {"dev_accuracy": 0.4, "latency_ms": 5.0})
    view = store.get_study(study.id)
    assert view.counts.completed == 2 and view.best is not None and view.best.id == b.trial_id
    kinds = [e.kind for e in store.trial(a.trial_id).events]
    assert kinds == ["claimed", "infeasible", "completed"]


def test_held_back_steps_are_judged_in_order_and_judging_stops_at_the_first_prune(
    store: Store,
) -> None:
    study = store.create_study(
        digits_spec(
            budget={"max_trials": 10, "parallelism": 10},
            pruner={"kind": "asha", "min_resource": 1, "reduction_factor": 2},
            task={"trainer": "mlp_classifier", "epochs": 4},
        )
    )
    for i, value in enumerate((0.5, 0.6, 0.7)):
        c = store.claim(f"w{i}", study_id=study.id)
        assert c is not None
        assert not store.report(c.holder(f"w{i}"), 1, {"dev_accuracy": value}).should_stop
    late = store.claim("late", study_id=study.id)
    assert late is not None
    # Steps 1 and 2 (both rungs) arrive together; step 1 already ranks in the bottom half.
    ack = store.report(late.holder("late"), 2, {"dev_accuracy": 0.9}, [(1, {"dev_accuracy": 0.1})])
    assert ack.should_stop and (ack.reason or "").startswith("asha: dev_accuracy 0.1 at rung 0")
    prunes = [e for e in store.trial(late.trial_id).events if e.kind == "prune"]
    assert len(prunes) == 1  # judged at step 1 and not again at step 2
    assert _curve(store, late.trial_id) == {1: 0.1, 2: 0.9}  # every step is kept


def test_a_report_and_a_heartbeat_are_one_statement_on_postgresql(store: Store) -> None:
    # Like the completion and the claim, a report (the lease checked and extended, the steps
    # stored, the study's state read) is one statement outside a transaction block on
    # PostgreSQL, and so is a heartbeat; SQLite runs them as a transaction of plain
    # statements (its BEGIN is one).
    study = store.create_study(digits_spec())
    c = store.claim("w", study_id=study.id)
    assert c is not None
    before = store.trial(c.trial_id).trial.lease_expires_at
    assert before is not None
    with statements_run(store) as statements:
        ack = store.report(c.holder("w"), 2, {"dev_accuracy": 0.2}, [(1, {})])
    assert len(statements) == (1 if store.db.is_postgres else 4), statements
    assert not ack.should_stop and ack.lease_expires_at > before
    trial = store.trial(c.trial_id).trial
    assert trial.last_step == 2 and trial.lease_expires_at == ack.lease_expires_at
    assert {p.step: p.metrics for p in store.trial(c.trial_id).intermediates} == {
        1: {},
        2: {"dev_accuracy": 0.2},
    }

    store.stop_trial(c.trial_id)
    with statements_run(store) as statements:
        beat = store.heartbeat(c.holder("w"))
    assert len(statements) == (1 if store.db.is_postgres else 3), statements
    assert beat.should_stop and beat.reason == "stop requested"
    assert store.trial(c.trial_id).trial.last_step == 2  # a heartbeat moves no step
    store.set_study_state(study.id, "stop")
    late = store.report(c.holder("w"), 3, {"dev_accuracy": 0.3})
    assert late.should_stop and late.reason == "study stopped"

    # Another worker's report is refused and stores nothing.
    with pytest.raises(LeaseLost):
        store.report(c.holder("impostor"), 4, {"dev_accuracy": 0.4})
    with pytest.raises(LeaseLost):
        store.heartbeat(Holder(c.trial_id, "w", c.attempt + 1))
    assert 4 not in {p.step for p in store.trial(c.trial_id).intermediates}


@pytest.mark.postgres
def test_a_lease_lost_before_the_pruner_judges_a_report_refuses_it(postgres_url: str) -> None:
    # On PostgreSQL the pruner judges a report after its one statement has committed, in a
    # transaction that locks the trial and checks the lease again: a trial lost in between
    # (here: its lease ran out and another server process put it back in the queue) is
    # neither judged nor marked pruned, and its worker is told so (409), its steps kept.
    store = Store(Database(postgres_url), lease_seconds=60)
    study = store.create_study(
        digits_spec(
            pruner={"kind": "asha", "min_resource": 1, "reduction_factor": 2},
            task={"trainer": "mlp_classifier", "epochs": 4},
        )
    )
    c = store.claim("w", study_id=study.id)
    assert c is not None
    requeue = (
        update(Trial)
        .where(Trial.id == c.trial_id)
        .values(state="queued", worker_id=None, lease_expires_at=None)
    )

    lost: list[str] = []

    def lose_the_lease(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not lost and "FOR UPDATE" in statement and "FROM trials" in statement:
            lost.append(statement)
            with store.db.autocommit() as other:
                other.execute(requeue)

    event.listen(store.db.engine, "before_cursor_execute", lose_the_lease)
    try:
        with pytest.raises(LeaseLost, match="no longer leased to w"):
            store.report(c.holder("w"), 1, {"dev_accuracy": 0.1})
    finally:
        event.remove(store.db.engine, "before_cursor_execute", lose_the_lease)
    assert lost  # the lease was lost where the test meant it to be
    detail = store.trial(c.trial_id)
    assert detail.trial.state == "queued"
    assert [e.kind for e in detail.events] == ["claimed"]
    assert _curve(store, c.trial_id) == {1: 0.1}
    store.db.dispose()


def test_a_history_free_sampler_samples_ahead_exactly_what_it_would_one_by_one(
    store: Store,
) -> None:
    spec = digits_spec(budget={"max_trials": 4 * AHEAD, "parallelism": 4 * AHEAD})
    study = store.create_study(spec)
    n = AHEAD + AHEAD // 2
    claims = [store.claim(f"w{i}") for i in range(n)]
    assert all(c is not None for c in claims)
    trials = store.trials(study.id, limit=100)
    # Two claims sampled AHEAD trials each: the claimed one and the rest queued for the next.
    assert len(trials) == 2 * AHEAD
    one_by_one = make_sampler(parse_spec(spec))
    for t in trials:
        assert t.params == one_by_one.propose(t.number, [], [])
    assert sorted(c.number for c in claims if c is not None) == list(range(n))


def test_sampling_ahead_never_exceeds_parallelism_or_max_trials(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 3}))
    assert store.claim("a") is not None
    with store.db.read() as s:
        unended = s.scalar(select(func.count()).where(Trial.study_id == study.id))
    assert unended == 3  # one running, two queued: the parallelism, not AHEAD
    assert store.claim("b") and store.claim("c") and store.claim("d") is None
    second = store.create_study(digits_spec(budget={"max_trials": 2, "parallelism": 50}))
    assert store.claim("e", study_id=second.id) is not None
    assert len(store.trials(second.id)) == 2  # max_trials, not AHEAD


def test_trials_sampled_ahead_are_dropped_unrun_when_the_study_ends(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 30, "parallelism": 30}))
    c = store.claim("w")
    assert c is not None
    store.set_study_state(study.id, "stop")
    view = store.get_study(study.id)
    assert (view.counts.queued, view.counts.running, view.counts.failed) == (0, 1, 0)
    enqueued = store.create_study(digits_spec(budget={"max_trials": 30, "parallelism": 30}))
    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    store.enqueue(enqueued.id, guess)
    store.set_study_state(enqueued.id, "stop")
    # A user's guess is not sampled ahead: it stays, as it always did.
    assert store.get_study(enqueued.id).counts.queued == 1


def test_a_users_guess_and_a_fork_run_before_the_trials_sampled_ahead(store: Store) -> None:
    # Between probes, as a busy server claims: PostgreSQL takes queued trials in one statement.
    quick = Store(store.db, lease_seconds=60, probe_seconds=3600)
    spec = digits_spec(budget={"max_trials": 100, "parallelism": 100})
    study = quick.create_study(spec)
    first = quick.claim("w1", study_id=study.id)
    assert first is not None and quick.get_study(study.id).counts.queued == AHEAD - 1
    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    enqueued = quick.enqueue(study.id, guess)
    # The trials sampled ahead were taken back and the numbers they held given out again.
    assert enqueued.number == 1 and quick.get_study(study.id).counts.queued == 1
    claimed = quick.claim("w2", study_id=study.id)
    assert claimed is not None and (claimed.trial_id, claimed.params) == (enqueued.id, guess)
    one_by_one = make_sampler(parse_spec(spec))
    sampled = quick.claim("w3", study_id=study.id)  # samples ahead again, after the guess
    assert sampled is not None and sampled.number == 2
    assert sampled.params == one_by_one.propose(2, [], [])
    assert quick.get_study(study.id).counts.queued == AHEAD - 1

    quick.record_checkpoint(first.holder("w1"), 3, lambda fresh: None)
    fork = quick.fork_trial(first.trial_id, {"lr": 0.001}, 3, lambda trial: None)
    assert fork.number == 3 and quick.get_study(study.id).counts.queued == 1
    forked = quick.claim("w4", study_id=study.id)
    assert forked is not None and forked.trial_id == fork.id
    after = [quick.claim(f"w{i}", study_id=study.id) for i in range(5, 8)]
    assert [c.number for c in after if c is not None] == [4, 5, 6]
    assert all(c.params == one_by_one.propose(c.number, [], []) for c in after if c)
    # Nothing was lost on the way: every number once, the guess and the fork among them.
    numbers = sorted(t.number for t in quick.trials(study.id, limit=200))
    assert numbers == list(range(len(numbers)))


def test_the_claim_made_with_a_completion_is_found_again_for_its_worker(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 1}))
    first = store.claim("w")
    assert first is not None
    store.complete(first.holder("w"), DONE)
    second = store.claim("w", after=first.trial_id)
    assert second is not None
    again = store.claimed_after(first.trial_id, "w")
    assert again is not None and (again.trial_id, again.attempt) == (second.trial_id, 1)
    assert again.params == second.params and again.task == second.task
    assert store.claimed_after(first.trial_id, "other") is None
    store.complete(second.holder("w"), DONE)
    assert store.claimed_after(first.trial_id, "w") is None  # no longer held


def test_a_throttle_is_due_once_per_interval_per_key() -> None:
    throttle = Throttle(3600)
    assert throttle.due("a") and throttle.due("b")
    assert not throttle.due("a")
    throttle.reset()
    assert throttle.due("a")
    assert all(Throttle(0).due("a") for _ in range(3))


def test_a_recent_value_is_read_once_per_interval_per_key_until_cleared() -> None:
    reads: list[str] = []

    def read(key: str) -> str:
        reads.append(key)
        return key.upper()

    recent: Recent[str] = Recent(3600)
    assert [recent.get(k, lambda k=k: read(k)) for k in "aab"] == ["A", "A", "B"]
    recent.put("a", "fresh")
    assert recent.get("a", lambda: read("a")) == "fresh" and reads == ["a", "b"]
    recent.clear()
    assert recent.get("a", lambda: read("a")) == "A" and reads == ["a", "b", "a"]
    never: Recent[str] = Recent(0)
    never.put("a", "kept?")
    assert [never.get("a", lambda: read("a")) for _ in range(2)] == ["A", "A"]


def test_claims_between_probes_take_the_queue_in_order_and_record_their_events(
    store: Store,
) -> None:
    # A server's store probes for expired leases now and then, not on every claim; between
    # probes, PostgreSQL claims from the queue in one statement outside a transaction.
    quick = Store(store.db, lease_seconds=60, probe_seconds=3600)
    study = quick.create_study(digits_spec(budget={"max_trials": 20, "parallelism": 20}))
    first = quick.claim("w", study_id=study.id)
    assert first is not None and first.number == 0
    quick.complete(first.holder("w"), DONE)
    rest = [quick.claim("w", study_id=study.id, after=first.trial_id) for _ in range(AHEAD - 1)]
    assert [c.number for c in rest if c is not None] == list(range(1, AHEAD))
    again = quick.claimed_after(first.trial_id, "w")
    assert again is not None and again.trial_id == rest[-1].trial_id  # type: ignore[union-attr]
    for c in rest:
        assert c is not None and c.task == first.task and c.attempt == 1
        assert [e.kind for e in quick.trial(c.trial_id).events] == ["claimed"]
    quick.set_study_state(study.id, "pause")
    assert quick.claim("w", study_id=study.id) is None


def test_between_probes_a_claim_from_the_queue_is_one_statement_and_still_sees_a_pause(
    store: Store,
) -> None:
    # A server's store keeps the running studies it read until its next probe: a claim from
    # the queue is then one statement on PostgreSQL, and on SQLite it need not read them in
    # its transaction. The claim checks the study still runs, so a pause through another
    # server process (another store on the database) hands out nothing all the same, and a
    # resume there is seen by the next claim.
    quick = Store(store.db, lease_seconds=60, probe_seconds=3600)
    other = Store(store.db, lease_seconds=60)
    study = other.create_study(digits_spec(budget={"max_trials": 20, "parallelism": 20}))
    first = quick.claim("w", study_id=study.id)  # samples, and queues trials ahead
    assert first is not None and first.queue_may_hold_more
    with statements_run(store) as statements:
        second = quick.claim("w", study_id=study.id)
    assert second is not None and second.number == 1
    # SQLite claims in its write transaction: it begins, then takes the trial and records
    # its event in two more.
    assert len(statements) == (1 if store.db.is_postgres else 3), statements
    other.set_study_state(study.id, "pause")
    assert quick.claim("w", study_id=study.id) is None
    assert other.get_study(study.id).counts.queued == AHEAD - 2
    other.set_study_state(study.id, "resume")
    third = quick.claim("w", study_id=study.id)
    assert third is not None and third.number == 2


def test_a_claim_that_samples_one_trial_at_a_time_skips_the_empty_queue_next_time(
    store: Store,
) -> None:
    # Parallelism 1 leaves nothing to sample ahead: every claim samples its own trial. After
    # the first, a claim no longer looks for a queued trial before it locks the study (on
    # PostgreSQL, nor in a statement of its own outside the transaction): round trips that
    # would find nothing. Yet a trial queued since (a user's guess) is still claimed first,
    # with its event.
    quick = Store(store.db, lease_seconds=60, probe_seconds=3600)
    study = quick.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 1}))
    first = quick.claim("w", study_id=study.id)
    assert first is not None and not first.queue_may_hold_more
    quick.complete(first.holder("w"), DONE)
    with statements_run(store) as statements:
        second = quick.claim("w", study_id=study.id, after=first.trial_id)
    assert second is not None and second.number == 1 and not second.queue_may_hold_more
    # Which studies run (PostgreSQL: SQLite goes by those it kept); the study row, locked;
    # its live trials (none queued); and the new trial, leased, with the study's next number
    # and the claim's event: one statement on PostgreSQL, three on SQLite (which also begins
    # its transaction with a statement).
    expected = 4 if store.db.is_postgres else 6
    assert len(statements) == expected, statements
    again = quick.claimed_after(first.trial_id, "w")
    assert again is not None and again.trial_id == second.trial_id
    quick.complete(second.holder("w"), DONE)

    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    store.enqueue(study.id, guess)
    third = quick.claim("w", study_id=study.id, after=second.trial_id)
    assert third is not None and third.params == guess and third.queue_may_hold_more
    assert [e.kind for e in quick.trial(third.trial_id).events] == ["claimed"]
    again = quick.claimed_after(second.trial_id, "w")
    assert again is not None and again.trial_id == third.trial_id


def test_a_completion_and_its_claim_together_are_one_transaction_on_sqlite(
    store: Store,
) -> None:
    # A completion that claims the next trial runs both through store.together(): on SQLite
    # one BEGIN and one commit, and an error inside rolls back both; on PostgreSQL each stays
    # its own (one statement apiece, outside a transaction block) and the completion stands.
    study = store.create_study(digits_spec(budget={"max_trials": 20, "parallelism": 20}))
    first = store.claim("w", study_id=study.id)
    assert first is not None
    with statements_run(store) as statements, store.together():
        store.complete(first.holder("w"), DONE)
        second = store.claim("w", study_id=study.id, after=first.trial_id)
    assert second is not None and second.number == 1
    assert store.trial(first.trial_id).trial.state == "completed"
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert len(begins) == (0 if store.db.is_postgres else 1), statements

    with pytest.raises(RuntimeError), store.together():
        store.complete(second.holder("w"), DONE)
        assert store.trial(second.trial_id).trial.state == "completed"  # seen inside
        raise RuntimeError("the claim failed")
    after = store.trial(second.trial_id).trial
    assert after.state == ("completed" if store.db.is_postgres else "running")
    assert (after.worker_id, after.attempt) == ("w", second.attempt)
