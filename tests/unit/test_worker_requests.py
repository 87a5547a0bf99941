"""The queue's policy for a worker's requests, without HTTP (hpsearch/store/worker_requests.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hpsearch.store import Store, worker_requests
from hpsearch.store.ending import Completion
from tests.conftest import digits_spec

DONE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def test_a_completion_whose_claim_fails_is_kept_and_its_resend_claims(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a completion and the claim it carries commit as one transaction (SQLite), a
    claim that fails has the completion committed on its own."""
    study = store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 1}))
    where = worker_requests.Where(host="h", study_id=study.id)
    first = worker_requests.claim(store, "w", where)
    assert first.job is not None and first.how == "trial"
    job = first.job
    claim = worker_requests.claim

    def failing_claim(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the sampler failed")

    def complete() -> worker_requests.Ended:
        steps = [(1, {"dev_accuracy": 0.4})]
        done = Completion(job.holder("w"), DONE, False, steps)
        return worker_requests.complete(store, done, where)

    monkeypatch.setattr(worker_requests, "claim", failing_claim)
    with pytest.raises(RuntimeError, match="sampler failed"):
        complete()
    kept = store.trial(job.trial_id)
    assert kept.trial.state == "completed" and kept.trial.value == 0.5
    assert [p.step for p in kept.intermediates] == [1]

    # The worker resends; the claim works again and hands out the next trial.
    monkeypatch.setattr(worker_requests, "claim", claim)
    again = complete()
    assert again.trial.state == "completed" and not again.newly
    assert again.next is not None and again.next.job is not None
    assert again.next.job.number == 1
    assert store.get_study(study.id).counts.completed == 1


def test_a_resent_completion_gets_the_claim_its_first_request_made(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 1}))
    where = worker_requests.Where(study_id=study.id)
    job = worker_requests.claim(store, "w", where).job
    assert job is not None
    done = Completion(job.holder("w"), DONE)
    first = worker_requests.complete(store, done, where)
    resent = worker_requests.complete(store, done, where)
    assert first.newly and not resent.newly
    assert first.next is not None and resent.next is not None and resent.next.how == "resent"
    assert first.next.job is not None and resent.next.job is not None
    assert (resent.next.job.trial_id, resent.next.job.attempt) == (
        first.next.job.trial_id,
        first.next.job.attempt,
    )
