"""The queue's policy for a worker's requests, over the store's transactions: what a claim
hands out, and what a completion that claims the next trial does when something fails.

Routes are adapters (parse, call one function here, shape the reply); the rules live here,
where they are tested without HTTP:

- A claim resent with its idempotency key gets the lease it was given, while the worker holds
  it. A requested final test evaluation comes before any trial: it is short, and someone
  waits for it. With nothing to hand out, the answer says whether to wait and for what.
- A completion resent (its first reply was lost) changes nothing and answers with the trial
  as it ended, and with the claim its first request made, if the worker still holds it.
- A trial held ahead (``Where.ahead``) is an ordinary lease, handed out only where it costs
  nothing (see :meth:`Store.claim`); a final test evaluation is never held ahead.
- A completion is never lost to the claim it carries: where both commit as one transaction
  (SQLite), a claim that fails has the completion committed on its own, then the error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from hpsearch.states import TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.ending import Completion
from hpsearch.store.lease import Claim, Holder
from hpsearch.store.models import Trial
from hpsearch.store.repository import Store
from hpsearch.tasks import capabilities


@dataclass(frozen=True)
class Where:
    """Where a worker claims: its host, what its command line offers, the study it serves."""

    host: str = ""
    devices: Sequence[str] = ()
    study_id: int | None = None
    entry_points: Collection[str] = ()
    commands: Collection[Sequence[str]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    refused_studies: Collection[int] = ()
    # A trial held ahead (see Store.claim): none of a study that learns from results.
    ahead: bool = False


@dataclass(frozen=True)
class Claimed:
    """What a claim got: a job (``how`` it was found), or none and what the worker waits for."""

    job: Claim | None
    how: Literal["resent", "evaluation", "trial", "none"]
    # False once no study the worker serves can produce another job: time to exit.
    open_studies: bool = True
    # With no job: (study id, what it would need, the entry point or command to allow).
    passed_over: list[tuple[int, str, str | None, list[str] | None]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


@dataclass
class Ended:
    """A trial a worker ended, whether this request ended it, and what else the reply says."""

    trial: Trial
    # False for a resend: the trial had ended before this request came.
    newly: bool
    # Why the worker is unhealthy now (a failed trial may have made it so), or None.
    worker_unhealthy: str | None = None
    next: Claimed | None = None


def claim(
    store: Store,
    worker_id: str,
    where: Where,
    after: int | None = None,
    request_id: str | None = None,
) -> Claimed:
    """A claim, as ``POST /claims`` (with its idempotency key ``request_id``, if any) and a
    completion's ``claim_next`` (``after`` the trial it completed) make it."""
    study_id = where.study_id
    if request_id is not None:
        held = store.claimed_by_request(worker_id, request_id)
        if held is not None:
            return Claimed(held, "resent")
    # A test evaluation is never held ahead: someone waits for it, and a slot may hold its
    # trial ahead for as long as its current trial runs.
    job = None if where.ahead else store.claim_final_evaluation(worker_id, study_id)
    if job is not None:
        return Claimed(job, "evaluation")
    worker = capabilities(
        where.devices, where.labels, where.entry_points, where.refused_studies, where.commands
    )
    trial = store.claim(
        worker_id,
        where.host,
        where.devices,
        study_id,
        after,
        where.entry_points,
        where.commands,
        request_id,
        labels=where.labels,
        refused_studies=where.refused_studies,
        ahead=where.ahead,
    )
    if trial is not None:
        return Claimed(trial, "trial")
    if where.ahead:
        return Claimed(None, "none")  # the worker has a trial running: it asks again later
    open_studies = store.has_open_studies(study_id) or store.has_pending_final_evaluation(study_id)
    passed = store.passed_over(worker, study_id)
    skipped = {sid for sid, *_ in passed}
    waiting = [f"study {sid} needs a worker with {needs}" for sid, needs, *_ in passed] + [
        why for sid, why in store.waiting(study_id) if sid not in skipped
    ]
    return Claimed(None, "none", open_studies, passed, waiting)


def complete(store: Store, c: Completion, claim_next: Where | None = None) -> Ended:
    """Ends a trial as ``c`` asks (see :meth:`Store.complete`) and, with ``claim_next``,
    claims the worker's next job in the same transaction where it can."""
    received = utcnow()
    trial_id, worker_id = c.holder.trial_id, c.holder.worker_id

    def end() -> Trial:
        return store.complete(c.holder, c.metrics, c.pruned, c.steps)

    def started() -> None:
        if c.started is not None:
            store.held_trial_started(c.started, worker_id, received)

    if claim_next is None:
        started()
        return _ended(store, end(), worker_id, received)
    done = None
    try:
        with store.together():
            started()
            done = _ended(store, end(), worker_id, received)
            if done.worker_unhealthy is not None:
                return done  # a worker that stops claiming is given nothing more
            held = store.claimed_after(trial_id, worker_id) if not done.newly else None
            done.next = (
                Claimed(held, "resent")
                if held is not None
                else claim(store, worker_id, claim_next, after=trial_id)
            )
    except Exception:
        if done is not None:
            end()  # the claim failed, and with it (on SQLite) the completion: never lose that
        raise
    return done


def fail(store: Store, holder: Holder, error: str) -> Ended:
    """Ends a trial its worker saw fail."""
    received = utcnow()
    return _ended(store, store.fail(holder, error), holder.worker_id, received)


def _ended(store: Store, trial: Trial, worker_id: str, received: datetime) -> Ended:
    newly = trial.finished_at is None or trial.finished_at >= received
    unhealthy = store.worker_unhealthy(worker_id) if trial.state == TrialState.FAILED else None
    return Ended(trial, newly, unhealthy)
