"""The trial queue: claim, lease, heartbeat, report, complete, fail.

Rules (data, not code scattered through the worker):

- A claim takes the oldest queued trial of the oldest running study; if there is none and the
  study may grow (budget, parallelism), it samples a new trial *inside the same transaction*,
  with the study row locked, so parallel claimers never receive the same suggestion.
- A claimed trial is leased until ``now + lease``; reports and heartbeats extend the lease.
- A lease that expires puts the trial back in the queue (the next claim is ``attempt + 1``)
  until ``max_attempts``, then the trial fails with the reason kept.
- A report from a worker that lost its lease is refused (:class:`LeaseLost`) and changes nothing.
- A worker that resends a completion it already made (its first reply was lost) gets the same
  answer again: completing is idempotent for the holder of the lease.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, LeaseLost, NotFound
from hpsearch.objective import Objective
from hpsearch.samplers import FinishedTrial, Sampler
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.models import ENDED_STATES, Study, Trial, TrialEvent
from hpsearch.store.studies import (
    finish_if_done,
    get_study,
    get_trial,
    live_counts,
    record_ended,
    spec_of,
)

# Violations can be infinite (an unmeasured satisficing metric); SQL floats and JSON cannot
# all hold that, so it is stored as the largest finite double.
_MAX_FLOAT = 1.7976931348623157e308


@dataclass(frozen=True)
class Claim:
    trial_id: int
    study_id: int
    number: int
    attempt: int
    params: dict[str, Any]
    task: dict[str, Any]
    lease_expires_at: datetime
    resume_step: int | None


@dataclass(frozen=True)
class ReportAck:
    should_stop: bool
    reason: str | None
    lease_expires_at: datetime


def touch_worker(session: Session, worker_id: str, host: str, devices: list[str]) -> None:
    connection = session.connection()
    connection.execute(
        sql.upsert_worker(connection.dialect.name),
        {"b_id": worker_id, "b_host": host, "b_devices": devices, "b_now": utcnow()},
    )


def _expired(session: Session, now: datetime) -> dict[int, list[int]]:
    """Trials whose lease ran out, by study: one indexed probe, empty almost always."""
    by_study: dict[int, list[int]] = {}
    for study_id, trial_id in session.connection().execute(sql.EXPIRED, {"b_now": now}):
        by_study.setdefault(study_id, []).append(trial_id)
    return by_study


def requeue_expired(session: Session, study: Study, trial_ids: list[int], now: datetime) -> int:
    """Returns expired leases of ``study`` (locked by the caller) to the queue.

    A trial that used every attempt fails with the reason kept; so does one whose study no
    longer runs, since nothing would claim it again.
    """
    expired = session.scalars(
        select(Trial)
        .where(Trial.id.in_(trial_ids), Trial.state == "running", Trial.lease_expires_at < now)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    max_attempts = study.spec.get("budget", {}).get("max_attempts", 3)
    for trial in expired:
        _event(session, trial, "lease_expired", f"worker {trial.worker_id} stopped answering")
        if trial.attempt >= max_attempts or study.state not in ("running", "paused"):
            trial.state = "failed"
            trial.error = (
                f"lease expired on each of {trial.attempt} attempts "
                f"(last worker: {trial.worker_id})"
                if trial.attempt >= max_attempts
                else f"lease expired (worker {trial.worker_id}) after the study was {study.state}"
            )
            trial.finished_at = now
            trial.lease_expires_at = None
            record_ended(session, study, trial)
        else:
            trial.state = "queued"
            trial.lease_expires_at = None
    if expired:
        finish_if_done(session, study)
        session.flush()  # the claim that follows reads the queue with plain SQL
    return len(expired)


def claim(
    session: Session,
    worker_id: str,
    lease: timedelta,
    sampler_for: Any,
    study_id: int | None = None,
) -> Claim | None:
    """Leases one trial to ``worker_id``, sampling a new one when a study needs it.

    Lock order, the same in every transaction of the store: a study row before any of its
    trial rows, and study rows in ascending id. Claimers take queued trials with ``SKIP
    LOCKED`` (never waiting on each other) and wait only on study rows, in that order, so no
    two transactions can wait on each other in a cycle.
    """
    now = utcnow()
    expires = now + lease
    connection = session.connection()
    expired = _expired(session, now)
    running = set(connection.scalars(sql.RUNNING_STUDIES, {"b_study_id": study_id}))
    for sid in sorted(running | expired.keys()):
        if sid in expired:
            requeue_expired(session, get_study(session, sid, lock=True), expired[sid], now)
        if sid not in running:
            continue
        claimed = _claim_queued(session, sid, worker_id, now, expires) or _sample_new(
            session, sid, sampler_for, worker_id, now, expires
        )
        if claimed is not None:
            connection.execute(
                sql.INSERT_EVENT,
                {
                    "b_trial_id": claimed.trial_id,
                    "b_kind": "claimed",
                    "b_attempt": claimed.attempt,
                    "b_worker_id": worker_id,
                    "b_detail": None,
                    "b_created_at": now,
                },
            )
            return claimed
    return None


def _claim_queued(
    session: Session, study_id: int, worker_id: str, now: datetime, expires: datetime
) -> Claim | None:
    """The oldest queued trial of the study (enqueued, re-queued or released), leased."""
    connection = session.connection()
    row = connection.execute(
        sql.CLAIM_QUEUED,
        {"b_study_id": study_id, "b_worker_id": worker_id, "b_now": now, "b_expires": expires},
    ).first()
    if row is None:
        return None
    trial_id, number, attempt, params, last_step = row
    task = connection.scalar(sql.STUDY_TASK, {"b_study_id": study_id})
    return Claim(
        trial_id, study_id, number, attempt, dict(params), dict(task or {}), expires, last_step
    )


def _sample_new(
    session: Session,
    study_id: int,
    sampler_for: Any,
    worker_id: str,
    now: datetime,
    expires: datetime,
) -> Claim | None:
    """A new trial from the sampler, already leased to ``worker_id``, or None.

    Locking the study row serializes sampling per study (parallel claimers never get the
    same suggestion); other studies are not held up.
    """
    study = get_study(session, study_id, lock=True)
    if study.state != "running":
        return None
    budget = study.spec.get("budget", {})
    if study.next_number >= budget.get("max_trials", 0):
        return None
    live = live_counts(session, study_id)
    if live[1] >= budget.get("parallelism", 1):
        return None
    if finish_if_done(session, study, live=live):
        return None
    sampler: Sampler = sampler_for(study)
    history = _history(session, study_id) if sampler.needs_history else []
    running_params = _running_params(session, study_id) if sampler.needs_history else []
    number = study.next_number
    params = sampler.propose(number, history, running_params)
    if params is None:
        finish_if_done(session, study, exhausted=True, live=live)
        return None
    trial_id = session.connection().scalar(
        sql.INSERT_LEASED_TRIAL,
        {
            "b_study_id": study_id,
            "b_number": number,
            "b_params": params,
            "b_worker_id": worker_id,
            "b_now": now,
            "b_expires": expires,
        },
    )
    study.next_number = number + 1
    task = dict(study.spec["task"])
    return Claim(trial_id, study_id, number, 1, dict(params), task, expires, None)


def _history(session: Session, study_id: int) -> list[FinishedTrial]:
    rows = session.execute(
        select(
            Trial.number, Trial.params, Trial.state, Trial.value, Trial.feasible, Trial.violation
        )
        .where(Trial.study_id == study_id, Trial.state.in_(ENDED_STATES))
        .order_by(Trial.number)
    ).all()
    return [
        FinishedTrial(
            number=n,
            params=p,
            state=s,
            value=v,
            feasible=bool(f),
            violation=math.inf if viol is None or viol >= _MAX_FLOAT else viol,
        )
        for n, p, s, v, f, viol in rows
    ]


def _running_params(session: Session, study_id: int) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            select(Trial.params).where(Trial.study_id == study_id, Trial.state == "running")
        )
    )


def _held(session: Session, trial_id: int, worker_id: str, attempt: int) -> Trial:
    """The trial, if ``worker_id`` still holds its lease for ``attempt``; else LeaseLost."""
    return _check_held(get_trial(session, trial_id, lock=True), worker_id, attempt)


def _check_held(trial: Trial, worker_id: str, attempt: int) -> Trial:
    trial_id = trial.id
    if trial.worker_id != worker_id or trial.attempt != attempt:
        raise LeaseLost(
            f"trial {trial_id} attempt {attempt} is no longer leased to "
            f"{worker_id} (now attempt {trial.attempt} of {trial.worker_id})"
        )
    if trial.state != "running":
        raise LeaseLost(f"trial {trial_id} is {trial.state}, not running")
    if trial.lease_expires_at is not None and trial.lease_expires_at < utcnow():
        raise LeaseLost(f"trial {trial_id}'s lease expired at {trial.lease_expires_at}")
    return trial


def _extend_lease(
    session: Session,
    trial_id: int,
    worker_id: str,
    attempt: int,
    lease: timedelta,
    step: int | None = None,
) -> tuple[int, bool, datetime]:
    """Extends the lease of a trial ``worker_id`` still holds, in one statement.

    The hot path of every report and heartbeat: one ``UPDATE … RETURNING`` that checks the
    holder, the attempt, the state and the lease in its ``WHERE`` (and locks the row). Only
    when it matches nothing does :func:`_held` read the trial to say why (LeaseLost, NotFound).
    Returns (study id, stop requested, new lease expiry).
    """
    now = utcnow()
    expires = now + lease
    params = {
        "b_trial_id": trial_id,
        "b_worker_id": worker_id,
        "b_attempt": attempt,
        "b_now": now,
        "b_expires": expires,
    }
    if step is None:
        statement = sql.EXTEND_LEASE
    else:
        statement, params["b_step"] = sql.EXTEND_LEASE_TO_STEP, step
    row = session.connection().execute(statement, params).first()
    if row is None:
        _held(session, trial_id, worker_id, attempt)  # raises, saying why
        raise LeaseLost(f"trial {trial_id} is no longer leased to {worker_id}")
    return row[0], bool(row[1]), expires


def _stop_reason(state: str, stop_requested: bool) -> str | None:
    if state in ("stopped", "completed"):
        return f"study {state}"
    return "stop requested" if stop_requested else None


def heartbeat(
    session: Session, trial_id: int, worker_id: str, attempt: int, lease: timedelta
) -> ReportAck:
    study_id, stop_requested, expires = _extend_lease(session, trial_id, worker_id, attempt, lease)
    state, _ = (
        session.connection().execute(sql.STUDY_STATE_AND_PRUNER, {"b_study_id": study_id}).one()
    )
    reason = _stop_reason(state, stop_requested)
    return ReportAck(reason is not None, reason, expires)


def report(
    session: Session,
    trial_id: int,
    worker_id: str,
    attempt: int,
    step: int,
    metrics: Mapping[str, float | None],
    lease: timedelta,
    prune: Any = None,
) -> ReportAck:
    """Stores one step's metrics (idempotent per step) and says whether to stop.

    ``prune(session, trial, step, metrics)`` is asked only when the study declares a pruner.
    """
    study_id, stop_requested, expires = _extend_lease(
        session, trial_id, worker_id, attempt, lease, step
    )
    clean = finite_metrics(metrics)
    connection = session.connection()
    connection.execute(
        sql.upsert_intermediate(connection.dialect.name),
        {
            "b_trial_id": trial_id,
            "b_step": step,
            "b_attempt": attempt,
            "b_metrics": clean,
            "b_created_at": utcnow(),
        },
    )
    state, pruner = connection.execute(sql.STUDY_STATE_AND_PRUNER, {"b_study_id": study_id}).one()
    reason = _stop_reason(state, stop_requested)
    if reason is None and prune is not None and pruner and pruner.get("kind") != "none":
        reason = prune(session, get_trial(session, trial_id), step, clean)
    return ReportAck(reason is not None, reason, expires)


def _lock_study_then_trial(session: Session, trial_id: int) -> tuple[Study, Trial]:
    """Locks in the store's one order (study, then trial); ``study_id`` never changes."""
    study_id = session.scalar(select(Trial.study_id).where(Trial.id == trial_id))
    if study_id is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study = get_study(session, study_id, lock=True)
    return study, get_trial(session, trial_id, lock=True)


def complete(
    session: Session,
    trial_id: int,
    worker_id: str,
    attempt: int,
    metrics: Mapping[str, float | None],
    pruned: bool = False,
    objective_for: Callable[[Study], Objective] | None = None,
) -> Trial:
    """Ends a trial with its final metrics; ``objective_for`` may cache the parsed spec."""
    study, trial = _lock_study_then_trial(session, trial_id)
    if trial.state in ENDED_STATES and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial  # a resend of a completion this worker already made
    _check_held(trial, worker_id, attempt)
    objective = objective_for(study) if objective_for else spec_of(study).build_objective()
    clean = finite_metrics(metrics)
    evaluation = objective.evaluate(clean)
    trial.metrics = clean
    trial.value = evaluation.value
    trial.feasible = evaluation.feasible
    trial.violation = min(evaluation.violation, _MAX_FLOAT)
    trial.state = "pruned" if pruned else "completed"
    trial.finished_at = utcnow()
    trial.lease_expires_at = None
    if not evaluation.feasible:
        _event(session, trial, "infeasible", "broke " + ", ".join(evaluation.broken))
    _event(session, trial, trial.state, None)
    record_ended(session, study, trial)
    finish_if_done(session, study)
    return trial


def fail(session: Session, trial_id: int, worker_id: str, attempt: int, error: str) -> Trial:
    study, trial = _lock_study_then_trial(session, trial_id)
    if trial.state == "failed" and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial
    _check_held(trial, worker_id, attempt)
    trial.state = "failed"
    trial.error = error
    trial.finished_at = utcnow()
    trial.lease_expires_at = None
    _event(session, trial, "failed", error.strip().splitlines()[-1] if error.strip() else None)
    record_ended(session, study, trial)
    finish_if_done(session, study)
    return trial


def release(session: Session, trial_id: int, worker_id: str, attempt: int, why: str) -> Trial:
    """A worker hands a trial back unfinished (SIGTERM): it returns to the queue at once."""
    trial = _held(session, trial_id, worker_id, attempt)
    trial.state = "queued"
    trial.lease_expires_at = None
    _event(session, trial, "released", why)
    return trial


def request_stop(session: Session, trial_id: int) -> Trial:
    study, trial = _lock_study_then_trial(session, trial_id)
    if trial.state == "queued":
        trial.state, trial.error, trial.finished_at = "failed", "stopped by user", utcnow()
        record_ended(session, study, trial)
        finish_if_done(session, study)
    elif trial.state == "running":
        trial.stop_requested = True
    else:
        raise InvalidState(f"trial {trial_id} is already {trial.state}")
    _event(session, trial, "stop_requested", None)
    return trial


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metrics as stored: numbers kept, NaN and ±inf recorded as missing (``None``)."""
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[name] = float(value) if math.isfinite(value) else None
    return out


def _event(session: Session, trial: Trial, kind: str, detail: str | None) -> None:
    session.add(
        TrialEvent(
            trial_id=trial.id,
            kind=kind,
            attempt=trial.attempt,
            worker_id=trial.worker_id,
            detail=detail,
            created_at=utcnow(),
        )
    )
