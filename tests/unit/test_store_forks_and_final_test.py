"""The store's side of checkpoints, forks and the final test evaluation, on real SQLite and
PostgreSQL databases: leases, the one-evaluation-per-study rule, the automatic request, and
what a fork may change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from hpsearch.errors import InvalidInput, InvalidState, LeaseLost
from hpsearch.store import Holder, Store
from hpsearch.store.clock import utcnow
from hpsearch.store.models import FinalEvaluation, Trial
from tests.conftest import digits_spec

GOOD = {"dev_accuracy": 0.9, "latency_ms": 1.0}


def finished_study(store: Store, n: int = 2, **spec: Any) -> tuple[int, list[int]]:
    """A study whose ``n`` trials completed (the last one best)."""
    study = store.create_study(digits_spec(budget={"max_trials": n, "parallelism": 1}, **spec))
    ids = []
    for i in range(n):
        c = store.claim("w", study_id=study.id)
        assert c is not None
        store.complete(c.holder("w"), {**GOOD, "dev_accuracy": 0.5 + i / 10})
        ids.append(c.trial_id)
    return study.id, ids


def expire_evaluation(store: Store, study_id: int) -> None:
    with store.db.write() as s:
        s.execute(
            update(FinalEvaluation)
            .where(FinalEvaluation.study_id == study_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_the_evaluation_is_leased_like_a_trial(store: Store) -> None:
    study_id, (first, best) = finished_study(store)
    assert store.claim_final_evaluation("w1") is None
    evaluation = store.request_final_evaluation(study_id, None)
    assert (evaluation.trial_id, evaluation.state, evaluation.source) == (best, "queued", "user")
    assert store.has_pending_final_evaluation(study_id)

    job = store.claim_final_evaluation("w1", study_id)
    assert job is not None and (job.trial_id, job.attempt, job.resume_step) == (best, 1, None)
    assert store.claim_final_evaluation("w2") is None  # one worker at a time
    expire_evaluation(store, study_id)
    again = store.claim_final_evaluation("w2")
    assert again is not None and again.attempt == 2
    with pytest.raises(LeaseLost):
        store.complete_final_evaluation(Holder(best, "w1", 1), {"test_accuracy": 0.5})
    with pytest.raises(InvalidInput, match="test_"):
        store.complete_final_evaluation(Holder(best, "w2", 2), {"dev_accuracy": 0.5})
    done = store.complete_final_evaluation(Holder(best, "w2", 2), {"test_accuracy": 0.8})
    assert done.state == "completed"
    assert store.complete_final_evaluation(Holder(best, "w2", 2), {"test_accuracy": 0.8}).state == (
        "completed"  # a resend is answered, not refused
    )
    assert store.trial(best).trial.test_metrics == {"test_accuracy": 0.8}
    assert store.trial(first).trial.test_metrics is None
    assert not store.has_pending_final_evaluation()
    final = store.get_study(study_id).final_evaluation
    assert final is not None and final.trial_id == best


def test_a_resent_completion_finds_the_evaluation_its_reply_handed_out(store: Store) -> None:
    study_id, (_, best) = finished_study(store)
    store.request_final_evaluation(study_id, None)
    job = store.claim_final_evaluation("w1", study_id)  # as the completion of `best` did
    held = store.claimed_after(best, "w1")
    assert held is not None and held.kind == "evaluate_test" and held == job
    assert store.claimed_after(best, "w2") is None
    expire_evaluation(store, study_id)
    assert store.claimed_after(best, "w1") is None  # no longer held


def test_one_final_trial_per_study(store: Store) -> None:
    study_id, (first, best) = finished_study(store)
    with pytest.raises(InvalidInput, match="trial_id"):
        store.request_final_evaluation(study_id, 10_000)
    store.request_final_evaluation(study_id, first)  # the user's choice, not the best
    with pytest.raises(InvalidState, match="selection set"):
        store.request_final_evaluation(study_id, best)
    job = store.claim_final_evaluation("w")
    assert job is not None
    store.fail_final_evaluation(Holder(first, "w", job.attempt), "out of memory")
    retried = store.request_final_evaluation(study_id, first)  # a failed one may run again
    assert (retried.state, retried.attempt, retried.error) == ("queued", 0, None)


def test_an_abandoned_evaluation_fails_after_max_attempts(store: Store) -> None:
    study_id, _ = finished_study(store)  # max_attempts: 3
    store.request_final_evaluation(study_id, None)
    for attempt in range(1, 4):
        job = store.claim_final_evaluation(f"w{attempt}")
        assert job is not None and job.attempt == attempt
        expire_evaluation(store, study_id)
    assert store.claim_final_evaluation("w4") is None
    final = store.final_evaluation(study_id)
    assert final is not None and final.state == "failed" and "3 attempts" in (final.error or "")


def test_a_study_that_asks_for_it_is_evaluated_when_it_completes(store: Store) -> None:
    study_id, (_, best) = finished_study(store, evaluate_test=True)
    final = store.final_evaluation(study_id)
    assert final is not None and (final.trial_id, final.source) == (best, "auto")


def test_a_checkpoint_is_recorded_by_the_lease_holder_only(store: Store) -> None:
    study = store.create_study(digits_spec())
    c = store.claim("w", study_id=study.id)
    assert c is not None and store.checkpoint_step(c.trial_id) is None
    fresh: list[bool] = []
    store.record_checkpoint(c.holder("w"), 1, fresh.append)
    store.record_checkpoint(c.holder("w"), 2, fresh.append)
    assert fresh == [True, False] and store.checkpoint_step(c.trial_id) == 2
    with pytest.raises(LeaseLost):
        store.record_checkpoint(c.holder("other"), 3, fresh.append)
    assert fresh == [True, False] and store.checkpoint_step(c.trial_id) == 2


def test_a_fork_changes_training_hyperparameters_only(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 1, "parallelism": 1})
    study = store.create_study(spec)
    c = store.claim("w", study_id=study.id)
    assert c is not None
    store.record_checkpoint(c.holder("w"), 3, lambda fresh: None)
    store.stop_trial(c.trial_id)
    store.complete(c.holder("w"), GOOD, pruned=True)
    assert store.get_study(study.id).study.state == "completed"
    copied: list[Trial] = []

    def fork(changes: dict[str, Any], step: int = 3) -> Trial:
        return store.fork_trial(c.trial_id, changes, step, copied.append)

    with pytest.raises(InvalidInput) as shape:
        fork({"hidden_units": 17 if c.params["hidden_units"] != 17 else 18})
    assert shape.value.field == "params.hidden_units"
    with pytest.raises(InvalidInput, match="outside the space"):
        fork({"lr": 5.0})
    with pytest.raises(InvalidInput, match="unknown"):
        fork({"dropout": 0.5})  # not searched in this study
    with pytest.raises(InvalidState, match="nothing left"):
        fork({"lr": 0.001}, step=10)
    assert copied == []  # nothing was created by the refused forks

    child = fork({"lr": 0.001, "hidden_units": c.params["hidden_units"]})
    assert [t.id for t in copied] == [child.id]  # its checkpoint was placed before commit
    assert child.params == {**c.params, "lr": 0.001}
    assert (child.source, child.parent_trial_id, child.checkpoint_step) == ("fork", c.trial_id, 3)
    reopened = store.get_study(study.id).study
    assert reopened.state == "running" and reopened.spec["budget"]["max_trials"] == 2
    claimed = store.claim("w", study_id=study.id)
    assert claimed is not None and claimed.trial_id == child.id


def test_a_failed_checkpoint_copy_creates_no_fork(store: Store) -> None:
    study = store.create_study(digits_spec())
    c = store.claim("w", study_id=study.id)
    assert c is not None

    def broken(_: Trial) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.fork_trial(c.trial_id, {}, 1, broken)
    assert [t for t in store.trials(study.id) if t.source == "fork"] == []
