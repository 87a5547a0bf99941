"""The store on real SQLite and PostgreSQL databases: claims, leases, ranking, controls."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from hpsearch.errors import InvalidInput, InvalidState, LeaseLost
from hpsearch.objective import rank
from hpsearch.store import Database, SchemaOutOfDate, Store, check_schema
from hpsearch.store.clock import utcnow
from hpsearch.store.db import initialize_if_empty
from hpsearch.store.models import Base, Study, Trial
from hpsearch.tasks import capabilities
from tests.conftest import digits_spec


def test_migrations_match_the_models(store: Store) -> None:
    with store.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_empty_database_is_refused_until_upgraded(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "postgres":
        url = request.getfixturevalue("make_postgres_database")(migrated=False)
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    db = Database(url)
    with pytest.raises(SchemaOutOfDate, match="hpsearch db upgrade"):
        check_schema(db)
    assert initialize_if_empty(db)
    check_schema(db)
    assert not initialize_if_empty(db)


def test_parallel_claimers_never_share_a_trial(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 60, "parallelism": 60}))
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(i: int) -> None:
        while (c := store.claim(f"w{i}")) is not None:
            with lock:
                claimed.append(c.trial_id)
            store.complete(c.holder(f"w{i}"), {"dev_accuracy": 0.5, "latency_ms": 1})

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)) == 60
    view = store.get_study(study.id)
    assert view.study.state == "completed" and view.counts.completed == 60


def test_parallelism_limits_running_trials(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 2}))
    assert store.claim("a") and store.claim("b")
    assert store.claim("c") is None


def test_a_worker_is_only_given_trials_it_can_run(database_url: str) -> None:
    # Probes rarely due: after the first claim, PostgreSQL takes queued trials through the
    # one-statement claim, which must pass over the same studies as the full one.
    store = Store(Database(database_url), lease_seconds=60, probe_seconds=3600)
    budget = {"max_trials": 10, "parallelism": 4}
    task = {"trainer": "custom", "entry_point": "lab.train:fit", "epochs": 3}
    custom = store.create_study(digits_spec(task=task, budget=budget))  # the older study
    builtin = store.create_study(digits_spec(budget=budget))
    try:
        plain = [store.claim("plain") for _ in range(4)]
        assert [c.study_id if c else None for c in plain] == [builtin.id] * 4
        assert store.claim("plain") is None  # the built-in study's parallelism is taken
        needs = "--allow lab.train:fit"
        lacking = [(custom.id, needs, "lab.train:fit", None)]
        assert store.passed_over(capabilities(["cpu"])) == lacking
        assert store.passed_over(capabilities(["cpu"], entry_points=["lab.train:fit"])) == []
        allowed = store.claim("lab", entry_points=("other:fn", "lab.train:fit"))
        assert allowed is not None and allowed.study_id == custom.id
        assert allowed.task["entry_point"] == "lab.train:fit"
    finally:
        store.db.dispose()


def test_a_worker_is_only_given_trials_whose_requirements_it_meets(database_url: str) -> None:
    store = Store(Database(database_url), lease_seconds=60, probe_seconds=3600)
    budget = {"max_trials": 10, "parallelism": 10}
    gpu = store.create_study(digits_spec(budget=budget, requires={"device": "cuda", "gpus": 2}))
    lab2 = store.create_study(digits_spec(budget=budget, requires={"labels": {"site": "lab2"}}))
    try:
        assert store.claim("cpu", devices=["cpu"]) is None
        for _ in range(2):  # the second through the one-statement claim on PostgreSQL
            labelled = store.claim("cpu", devices=["cpu"], labels={"site": "lab2", "x": "y"})
            assert labelled is not None and labelled.study_id == lab2.id
        assert store.claim("cpu", devices=["cpu"], labels={"site": "lab1"}) is None
        one_gpu = store.claim("g1", devices=["cuda:0"], labels={"site": "lab2"})
        assert one_gpu is not None and one_gpu.study_id == lab2.id
        for _ in range(2):
            two = store.claim("g2", devices=["cuda:0", "cuda:1"])
            assert two is not None and two.study_id == gpu.id
        lacking = store.passed_over(capabilities(["cpu"], {"site": "lab1"}))
        assert lacking == [
            (gpu.id, "2 GPUs (device cuda)", None, None),
            (lab2.id, "label site=lab2", None, None),
        ]
    finally:
        store.db.dispose()


def _expire(store: Store, trial_id: int) -> None:
    with store.db.write() as s:
        s.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_expired_lease_requeues_and_late_report_is_refused(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 1, "parallelism": 1}))
    first = store.claim("dies")
    assert first is not None
    store.report(first.holder("dies"), 1, {"dev_accuracy": 0.3})
    _expire(store, first.trial_id)
    second = store.claim("survives")
    assert second is not None
    assert (second.trial_id, second.attempt) == (first.trial_id, 2)
    assert second.resume_step == 1
    with pytest.raises(LeaseLost):
        store.report(first.holder("dies"), 2, {"dev_accuracy": 0.4})
    with pytest.raises(LeaseLost):
        store.complete(first.holder("dies"), {"dev_accuracy": 0.9})
    done = store.complete(second.holder("survives"), {"dev_accuracy": 0.8, "latency_ms": 1})
    assert done.state == "completed" and done.value == 0.8
    # A resend of the same completion (its reply was lost) gets the same answer.
    again = store.complete(second.holder("survives"), {"dev_accuracy": 0.1})
    assert again.value == 0.8
    events = [e.kind for e in store.trial(first.trial_id).events]
    assert events == ["claimed", "lease_expired", "claimed", "completed"]


def test_trial_fails_after_max_attempts(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 1, "parallelism": 1, "max_attempts": 2})
    study = store.create_study(spec)
    for attempt in (1, 2):
        c = store.claim(f"w{attempt}")
        assert c is not None and c.attempt == attempt
        _expire(store, c.trial_id)
    assert store.claim("w3") is None
    view = store.get_study(study.id)
    assert view.counts.failed == 1 and view.study.state == "failed"  # no trial completed
    (trial,) = store.trials(study.id)
    assert trial.error is not None and "2 attempts" in trial.error


def test_every_way_a_trial_ends_leaves_it_ended_alike(store: Store) -> None:
    """Completed, failed by its worker, expired on its last attempt, stopped while queued
    (store/ending.py): each ends with its finish time, no lease, the attempt that ended it
    kept, the study's counters moved once, and an event that says how."""
    spec = digits_spec(budget={"max_trials": 3, "parallelism": 3, "max_attempts": 1})
    study = store.create_study(spec)
    done, failed, expired = (store.claim(f"w{i}") for i in range(3))
    assert done is not None and failed is not None and expired is not None
    store.complete(done.holder("w0"), {"dev_accuracy": 0.9, "latency_ms": 5.0})
    store.fail(failed.holder("w1"), "Traceback ...\nRuntimeError: boom")
    stopped = store.enqueue(study.id, dict(done.params))
    store.stop_trial(stopped.id)
    _expire(store, expired.trial_id)
    assert store.claim("w3") is None  # finds the expired lease, on its last attempt

    ended = {
        t.id: (t.state, t.worker_id, t.attempt, t.lease_expires_at, t.finished_at is not None)
        for t in store.trials(study.id)
    }
    assert ended == {
        done.trial_id: ("completed", "w0", 1, None, True),
        failed.trial_id: ("failed", "w1", 1, None, True),
        expired.trial_id: ("failed", "w2", 1, None, True),
        stopped.id: ("failed", None, 0, None, True),
    }
    view = store.get_study(study.id)
    assert (view.counts.completed, view.counts.failed) == (1, 3)
    assert view.best is not None and view.best.id == done.trial_id
    kinds = {t: [e.kind for e in store.trial(t).events] for t in ended}
    assert kinds[done.trial_id][-1] == "completed" and kinds[failed.trial_id][-1] == "failed"
    assert kinds[expired.trial_id][-1] == "lease_expired"
    assert kinds[stopped.id] == ["stop_requested"]
    assert store.trial(stopped.id).trial.error == "stopped by user"


def test_best_and_sql_rank_follow_the_ranking_rule(store: Store) -> None:
    rng = random.Random(3)
    study = store.create_study(digits_spec(budget={"max_trials": 40, "parallelism": 40}))
    for i in range(40):
        c = store.claim(f"w{i}")
        assert c is not None
        if i % 7 == 3:
            store.fail(c.holder(f"w{i}"), "Traceback...\nRuntimeError: boom")
            continue
        # Coarse values make ties, which must go to the earlier trial.
        metrics = {
            "dev_accuracy": rng.choice([0.5, 0.7, 0.9]),
            "latency_ms": rng.choice([50.0, 150.0, 400.0]),
        }
        store.complete(c.holder(f"w{i}"), metrics)
    completed = store.trials(study.id, states=["completed"], limit=1000)
    python_order = [t.number for t in rank([_Rankable(t) for t in completed], "maximize")]
    sql_order = [t.number for t in store.trials(study.id, order="rank", limit=1000)]
    assert sql_order[: len(python_order)] == python_order
    best = store.get_study(study.id).best
    assert best is not None and best.feasible and best.number == python_order[0]
    assert all(not t.feasible for t in completed if t.value is not None and t.value > best.value)


def test_rank_pages_join_up_across_the_feasible_trials_and_the_rest(store: Store) -> None:
    rng = random.Random(5)
    study = store.create_study(digits_spec(budget={"max_trials": 30, "parallelism": 30}))
    for i in range(30):
        c = store.claim(f"w{i}")
        assert c is not None
        if i % 9 == 4:
            continue  # left running
        if i % 7 == 3:
            store.fail(c.holder(f"w{i}"), "RuntimeError: boom")
            continue
        metrics = {"dev_accuracy": rng.choice([0.5, 0.7, 0.9]), "latency_ms": rng.choice([50, 150])}
        store.complete(c.holder(f"w{i}"), metrics)
    whole = [t.id for t in store.trials(study.id, order="rank", limit=1000)]
    assert len(whole) == 30
    for size in (1, 4, 7, 30):
        pages = [
            t.id
            for offset in range(0, 30, size)
            for t in store.trials(study.id, order="rank", offset=offset, limit=size)
        ]
        assert pages == whole, size
    assert store.trials(study.id, order="rank", offset=30, limit=5) == []


class _Rankable:
    def __init__(self, t: Trial) -> None:
        self.number, self.value = t.number, t.value
        self.feasible, self.violation = bool(t.feasible), t.violation or 0.0


def test_pause_resume_stop(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 5}))
    running = store.claim("w")
    assert running is not None
    store.set_study_state(study.id, "pause")
    assert store.claim("w2") is None
    store.set_study_state(study.id, "resume")
    assert store.claim("w2") is not None
    store.set_study_state(study.id, "stop")
    ack = store.report(running.holder("w"), 1, {"dev_accuracy": 0.5})
    assert ack.should_stop and ack.reason == "study stopped"
    with pytest.raises(InvalidState):
        store.set_study_state(study.id, "resume")


def test_enqueued_configuration_runs_first_and_is_validated(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 3, "parallelism": 1}))
    guess = {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    store.enqueue(study.id, guess)
    c = store.claim("w")
    assert c is not None and c.params == guess
    with pytest.raises(InvalidInput, match="lr"):
        store.enqueue(study.id, {**guess, "lr": 5.0})


def test_max_failures_stops_the_study(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 10, "parallelism": 1, "max_failures": 2})
    study = store.create_study(spec)
    c = store.claim("w")
    assert c is not None
    store.complete(c.holder("w"), {"dev_accuracy": 0.5, "latency_ms": 1})
    for i in range(2):
        c = store.claim("w")
        assert c is not None
        store.fail(c.holder("w"), f"crash {i}")
    view = store.get_study(study.id)
    assert view.study.state == "stopped" and "max_failures" in (view.study.reason or "")
    assert store.claim("w") is None


def test_max_failures_defaults_to_half_the_trials_and_a_study_with_no_success_fails(
    store: Store,
) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 1}))
    for i in range(5):
        if i == 3:  # the pause after the first 3 failures: resumed, failures go on
            assert store.get_study(study.id).study.state == "paused"
            store.set_study_state(study.id, "resume")
        c = store.claim("w")
        assert c is not None
        store.fail(c.holder("w"), f"crash {i}")
    view = store.get_study(study.id)
    assert (view.study.state, view.study.reason) == ("failed", "max_failures (5) reached")


def test_a_study_whose_first_trials_all_fail_pauses_itself(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 20, "parallelism": 4}))
    claims = [store.claim(f"w{i}") for i in range(4)]
    for i, c in enumerate(claims[:3]):
        assert c is not None
        if i == 1:  # one that never reports its objective fails too
            store.complete(c.holder("w1"), {"dev_accuracy_top1": 0.5})
        else:
            store.fail(c.holder(f"w{i}"), f"Traceback ...\nFileNotFoundError: data {i}")
    view = store.get_study(study.id)
    assert view.study.state == "paused"
    assert view.study.reason == (
        "the first 3 trials all failed (trial 2: FileNotFoundError: data 2); "
        "fix the cause, then resume"
    )
    assert store.claim("w9") is None
    last = claims[3]
    assert last is not None  # a running trial goes on, and counts
    store.complete(last.holder("w3"), {"dev_accuracy": 0.5, "latency_ms": 1})
    assert store.get_study(study.id).counts.completed == 1


def test_a_trial_without_its_objective_fails_saying_what_it_reported(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 1}))
    c = store.claim("w")
    assert c is not None
    trial = store.complete(c.holder("w"), {"dev_accuracy_top1": 0.9, "latency_ms": 1.0})
    assert trial.state == "failed"
    assert trial.error == (
        "objective dev_accuracy was never reported; reported: dev_accuracy_top1, latency_ms"
    )
    view = store.get_study(study.id)
    assert (view.counts.failed, view.counts.completed, view.study.n_failed) == (1, 0, 1)


def test_a_diverged_trial_completes_and_ranks_below_every_finite_value(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 3, "parallelism": 3}))
    claims = [store.claim(f"w{i}") for i in range(3)]
    outcomes = [
        {"dev_accuracy": None, "latency_ms": 1.0},  # NaN, as JSON carries it
        {"dev_accuracy": 0.2, "latency_ms": 500.0},  # infeasible, but a finite value
        {"dev_accuracy": 0.9, "latency_ms": 1.0},
    ]
    for i, (c, metrics) in enumerate(zip(claims, outcomes, strict=True)):
        assert c is not None
        assert store.complete(c.holder(f"w{i}"), metrics).state == "completed"
    ranked = store.trials(study.id, order="rank")
    assert [t.number for t in ranked] == [2, 1, 0]
    assert [t.number for t in rank([_Rankable(t) for t in ranked], "maximize")] == [2, 1, 0]
    view = store.get_study(study.id)
    assert view.study.state == "completed" and view.best is not None and view.best.number == 2
    assert "diverged" in [e.kind for e in store.trial(ranked[2].id).events]


def test_time_limit_ends_the_study_and_tells_running_trials_to_stop(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 10, "parallelism": 3, "time_limit_s": 60})
    study = store.create_study(spec)
    running = store.claim("w")
    assert running is not None
    store.enqueue(
        study.id, {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64}
    )
    with store.db.write() as s:  # the study began 61 s ago
        s.execute(
            update(Study)
            .where(Study.id == study.id)
            .values(created_at=utcnow() - timedelta(seconds=61))
        )
    assert store.claim("w2") is None
    view = store.get_study(study.id)
    assert view.study.state == "completed" and "time limit" in (view.study.reason or "")
    assert (view.counts.queued, view.counts.running) == (0, 1)
    ack = store.report(running.holder("w"), 1, {"dev_accuracy": 0.5})
    assert ack.should_stop and ack.reason == "study completed"


def test_target_value_ends_the_study_when_a_feasible_trial_reaches_it(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 10, "parallelism": 3, "target_value": 0.9})
    study = store.create_study(spec)
    first, second = store.claim("a"), store.claim("b")
    assert first is not None and second is not None
    # Infeasible (too slow): never the best, so it cannot end the study.
    store.complete(first.holder("a"), {"dev_accuracy": 0.95, "latency_ms": 500})
    assert store.get_study(study.id).study.state == "running"
    store.complete(second.holder("b"), {"dev_accuracy": 0.91, "latency_ms": 5})
    view = store.get_study(study.id)
    assert view.study.state == "completed" and "target value" in (view.study.reason or "")
    assert view.best is not None and view.best.id == second.trial_id
    assert store.claim("c") is None


def test_nan_metrics_are_stored_as_missing(store: Store) -> None:
    store.create_study(digits_spec(budget={"max_trials": 1}))
    c = store.claim("w")
    assert c is not None
    t = store.complete(c.holder("w"), {"dev_accuracy": float("nan"), "latency_ms": 1})
    assert t.metrics["dev_accuracy"] is None and t.value is None


def test_claims_read_only_the_trials_that_ended_since(store: Store) -> None:
    """A sampler with history (coarse_to_fine) is not fed the study re-read per claim."""
    spec = digits_spec(
        sampler={
            "kind": "coarse_to_fine",
            "rounds": 2,
            "trials_per_round": 10,
            "top_k": 3,
            "seed": 0,
        },
        budget={"max_trials": 30, "parallelism": 1},
    )
    store.create_study(spec)
    for i in range(30):
        c = store.claim("w")
        assert c is not None
        store.complete(c.holder("w"), {"dev_accuracy": i / 30, "latency_ms": 1})
    # 29 claims saw a history; each ended trial's row was read once, not once per claim.
    assert store._hints.history.rows_read == 29


def test_a_worker_whose_last_trials_fail_where_others_complete_is_unhealthy(
    store: Store,
) -> None:
    store.create_study(digits_spec(budget={"max_trials": 10, "parallelism": 1}))
    good = {"dev_accuracy": 0.5, "latency_ms": 1.0}
    c = store.claim("healthy")
    assert c is not None
    store.complete(c.holder("healthy"), good)
    for i in range(3):
        c = store.claim("broken")
        assert c is not None and store.worker_unhealthy("broken") is None
        if i == 2:  # a completion without the objective counts as a failure too
            store.complete(c.holder("broken"), {"latency_ms": 1.0})
        else:
            store.fail(c.holder("broken"), "Traceback ...\nRuntimeError: CUDA error")
    reason = store.worker_unhealthy("broken")
    assert reason is not None and reason.startswith("its last 3 trials failed")
    assert store.worker_unhealthy("healthy") is None
    assert {w.id: w.unhealthy for w in store.workers()}["broken"] == reason


def test_a_pruned_trial_reaches_the_tpe_adapter_with_its_last_step(store: Store) -> None:
    from optuna.trial import TrialState

    from hpsearch.samplers.optuna_adapter import OptunaSampler

    study = store.create_study(
        digits_spec(sampler={"kind": "tpe", "seed": 0}, budget={"max_trials": 5, "parallelism": 1})
    )
    c = store.claim("w")
    assert c is not None
    for step, accuracy in [(1, 0.2), (2, 0.3), (3, 0.35)]:
        store.report(c.holder("w"), step, {"dev_accuracy": accuracy, "latency_ms": 1})
    store.complete(c.holder("w"), {"dev_accuracy": 0.35, "latency_ms": 1}, True)
    assert store.claim("w") is not None  # the claim feeds the sampler the pruned trial
    sampler = store._rules.get(None, (study.id, study.created_at)).sampler  # type: ignore[arg-type]
    assert isinstance(sampler, OptunaSampler)
    pruned = sampler.study.get_trials(deepcopy=False)[0]
    assert pruned.state == TrialState.PRUNED
    assert pruned.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.35}
    assert pruned.last_step == 3
