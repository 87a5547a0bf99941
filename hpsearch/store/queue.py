"""The trial queue, the lease side: heartbeat, report, fail, release, stop (a completion:
:mod:`hpsearch.store.completion`; what ending a trial writes: :mod:`hpsearch.store.ending`).

Rules (data, not code scattered through the worker):

- A claimed trial (see :mod:`hpsearch.store.claims`) is leased until ``now + lease``; reports
  and heartbeats extend the lease.
- A report from a worker that lost its lease is refused (:class:`LeaseLost`) and changes nothing.
- A worker that resends a completion it already made (its first reply was lost) gets the same
  answer again: completing is idempotent for the holder of the lease.
- Locks are taken in one order everywhere: a study row before its trial rows, studies by id
  (see :func:`hpsearch.store.claims.claim`). PostgreSQL can then never deadlock two store
  transactions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, LeaseLost
from hpsearch.objective import finite_metrics
from hpsearch.states import ENDED_STUDY, TrialState
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.ending import end
from hpsearch.store.lease import Holder, Steps, already_ended, check_lease
from hpsearch.store.models import Trial
from hpsearch.store.studies import get_trial, lock_study_then_trial, record_event


@dataclass(frozen=True)
class ReportAck:
    should_stop: bool
    reason: str | None
    lease_expires_at: datetime


def held(session: Session, holder: Holder) -> Trial:
    """The trial, locked, if ``holder`` still holds its lease; else LeaseLost."""
    return check_held(get_trial(session, holder.trial_id, lock=True), holder)


def check_held(trial: Trial, holder: Holder) -> Trial:
    """``trial``, if ``holder`` holds its lease (see :mod:`.lease`); else LeaseLost."""
    check_lease(trial, holder, f"trial {trial.id}")
    return trial


def _extend_lease(
    session: Session, holder: Holder, lease: timedelta, step: int | None = None
) -> tuple[int, bool, datetime]:
    """Extends the lease of a trial ``holder`` still holds, in one statement.

    The hot path of every report and heartbeat: one ``UPDATE … RETURNING`` that checks the
    holder, the attempt, the state and the lease in its ``WHERE`` (and locks the row). Only
    when it matches nothing does :func:`_held` read the trial to say why (LeaseLost, NotFound).
    Returns (study id, stop requested, new lease expiry).
    """
    now = utcnow()
    expires = now + lease
    params = {**holder_params(holder), "b_now": now, "b_expires": expires}
    if step is None:
        statement = sql.EXTEND_LEASE
    else:
        statement, params["b_step"] = sql.EXTEND_LEASE_TO_STEP, step
    row = session.connection().execute(statement, params).first()
    if row is None:
        held(session, holder)  # raises, saying why
        raise LeaseLost(f"trial {holder.trial_id} is no longer leased to {holder.worker_id}")
    return row[0], bool(row[1]), expires


def stop_reason(state: str, stop_requested: bool) -> str | None:
    if state in ENDED_STUDY:
        return f"study {state}"
    return "stop requested" if stop_requested else None


def holder_params(holder: Holder) -> dict[str, Any]:
    """The bound parameters that name a lease's holder in the store's statements."""
    return {
        "b_trial_id": holder.trial_id,
        "b_worker_id": holder.worker_id,
        "b_attempt": holder.attempt,
    }


def heartbeat(session: Session, holder: Holder, lease: timedelta) -> ReportAck:
    study_id, stop_requested, expires = _extend_lease(session, holder, lease)
    state, _, _ = (
        session.connection().execute(sql.STUDY_STATE_AND_PRUNER, {"b_study_id": study_id}).one()
    )
    reason = stop_reason(state, stop_requested)
    return ReportAck(reason is not None, reason, expires)


def report(
    session: Session, holder: Holder, steps: Steps, lease: timedelta, prune: Any = None
) -> ReportAck:
    """Stores reported steps (idempotent per step) and says whether to stop.

    ``steps`` are one step's metrics, or several that the worker held back (oldest first):
    they are stored together and judged in order. ``prune(session, trial, step, metrics)``
    is asked only when the study declares a pruner; the first step it stops ends the judging.
    """
    last = max(step for step, _ in steps)
    study_id, stop_requested, expires = _extend_lease(session, holder, lease, last)
    cleaned = [(step, finite_metrics(metrics)) for step, metrics in steps]
    connection = session.connection()
    store_steps(session, holder, cleaned)
    state, pruner, scheduler = connection.execute(
        sql.STUDY_STATE_AND_PRUNER, {"b_study_id": study_id}
    ).one()
    reason = stop_reason(state, stop_requested)
    if reason is None and prune is not None and judged_by(pruner, scheduler):
        reason = judge(session, get_trial(session, holder.trial_id), cleaned, prune)
    return ReportAck(reason is not None, reason, expires)


def judged_by(pruner: dict[str, Any] | None, scheduler: dict[str, Any] | None = None) -> bool:
    """Whether a study's ``pruner`` or ``scheduler`` (its spec's entries) judges reported
    steps (PBT's exploit decision is made at a report, like a pruner's)."""
    return any(entry and entry.get("kind") != "none" for entry in (pruner, scheduler))


def judge(session: Session, trial: Trial, steps: Steps, prune: Any) -> str | None:
    """Why the pruner stops ``trial`` at one of ``steps`` (judged in order: the first it
    stops ends the judging), or None. ``prune(session, trial, step, metrics)``."""
    for step, metrics in sorted(steps, key=lambda s: s[0]):
        reason: str | None = prune(session, trial, step, metrics)
        if reason is not None:
            return reason
    return None


def store_steps(
    session: Session, holder: Holder, steps: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """Upserts the steps ``holder`` reported in one statement (a resent or re-run step
    replaces its row; of a step sent twice in one batch, the later wins)."""
    if not steps:
        return
    connection = session.connection()
    connection.execute(
        sql.upsert_steps(connection.dialect.name),
        {
            "b_trial_id": holder.trial_id,
            "b_attempt": holder.attempt,
            "b_now": utcnow(),
            "b_steps": steps_json(steps),
        },
    )


def steps_json(steps: Steps) -> str:
    """Steps as the upserts read them: one entry per step (one statement may not upsert a
    row twice), the later of a step sent twice in one batch."""
    unique = {step: metrics for step, metrics in steps}
    return json.dumps([{"step": k, "metrics": m} for k, m in unique.items()])


def fail(session: Session, holder: Holder, error: str) -> Trial:
    study, trial = lock_study_then_trial(session, holder.trial_id)
    if already_ended(trial, holder, [TrialState.FAILED]):
        return trial
    check_held(trial, holder)
    last_line = error.strip().splitlines()[-1] if error.strip() else None
    end(session, study, trial, TrialState.FAILED, error, event=("failed", last_line))
    return trial


def release(session: Session, holder: Holder, why: str) -> Trial:
    """A worker hands a trial back unfinished (SIGTERM): it returns to the queue at once."""
    trial = held(session, holder)
    trial.state = TrialState.QUEUED
    trial.lease_expires_at = None
    record_event(session, trial, "released", why)
    return trial


def request_stop(session: Session, trial_id: int) -> Trial:
    study, trial = lock_study_then_trial(session, trial_id)
    if trial.state == TrialState.QUEUED:
        end(session, study, trial, TrialState.FAILED, "stopped by user")
    elif trial.state == TrialState.RUNNING:
        trial.stop_requested = True
    else:
        raise InvalidState(f"trial {trial_id} is already {trial.state}")
    record_event(session, trial, "stop_requested", None)
    return trial
