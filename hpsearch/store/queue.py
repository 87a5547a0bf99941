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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, LeaseLost
from hpsearch.samplers import FinishedTrial, Sampler
from hpsearch.store.clock import utcnow
from hpsearch.store.models import ENDED_STATES, Study, Trial, TrialEvent, TrialIntermediate, Worker
from hpsearch.store.studies import finish_if_done, get_study, get_trial, record_ended, spec_of

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
    now = utcnow()
    worker = session.get(Worker, worker_id)
    if worker is None:
        session.add(
            Worker(id=worker_id, host=host, devices=devices, created_at=now, last_seen_at=now)
        )
    else:
        worker.host, worker.devices, worker.last_seen_at = host, devices, now


def requeue_expired(session: Session, now: datetime) -> int:
    """Returns expired leases to the queue, or fails trials that used every attempt."""
    expired = session.scalars(
        select(Trial)
        .where(Trial.state == "running", Trial.lease_expires_at < now)
        .with_for_update(skip_locked=True)
    ).all()
    for trial in expired:
        study = get_study(session, trial.study_id)
        max_attempts = study.spec.get("budget", {}).get("max_attempts", 3)
        _event(session, trial, "lease_expired", f"worker {trial.worker_id} stopped answering")
        if trial.attempt >= max_attempts:
            trial.state = "failed"
            trial.error = (
                f"lease expired on each of {trial.attempt} attempts "
                f"(last worker: {trial.worker_id})"
            )
            trial.finished_at = now
            record_ended(session, study, trial)
            finish_if_done(session, study)
        else:
            trial.state = "queued"
            trial.lease_expires_at = None
    return len(expired)


def claim(
    session: Session,
    worker_id: str,
    lease: timedelta,
    sampler_for: Any,
    study_id: int | None = None,
) -> Claim | None:
    """Leases one trial to ``worker_id``, sampling a new one when a study needs it."""
    now = utcnow()
    requeue_expired(session, now)
    studies = select(Study.id).where(Study.state == "running").order_by(Study.id)
    if study_id is not None:
        studies = studies.where(Study.id == study_id)
    for sid in session.scalars(studies).all():
        trial = _next_queued(session, sid) or _sample_new(session, sid, sampler_for, now)
        if trial is None:
            continue
        trial.state = "running"
        trial.attempt += 1
        trial.worker_id = worker_id
        trial.lease_expires_at = now + lease
        trial.started_at = trial.started_at or now
        trial.stop_requested = False
        _event(session, trial, "claimed", None)
        study = get_study(session, sid)
        return Claim(
            trial_id=trial.id,
            study_id=sid,
            number=trial.number,
            attempt=trial.attempt,
            params=dict(trial.params),
            task=dict(study.spec["task"]),
            lease_expires_at=trial.lease_expires_at,
            resume_step=trial.last_step,
        )
    return None


def _next_queued(session: Session, study_id: int) -> Trial | None:
    return session.scalars(
        select(Trial)
        .where(Trial.study_id == study_id, Trial.state == "queued")
        .order_by(Trial.number)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


def _sample_new(session: Session, study_id: int, sampler_for: Any, now: datetime) -> Trial | None:
    # Locking the study row serializes sampling per study; other studies are not held up.
    study = get_study(session, study_id, lock=True)
    if study.state != "running":
        return None
    budget = study.spec.get("budget", {})
    if study.next_number >= budget.get("max_trials", 0):
        return None
    running = (
        session.scalar(
            select(func.count()).where(Trial.study_id == study_id, Trial.state == "running")
        )
        or 0
    )
    if running >= budget.get("parallelism", 1):
        return None
    if finish_if_done(session, study):
        return None
    sampler: Sampler = sampler_for(study)
    history = _history(session, study_id) if sampler.needs_history else []
    running_params = _running_params(session, study_id) if sampler.needs_history else []
    params = sampler.propose(study.next_number, history, running_params)
    if params is None:
        finish_if_done(session, study, exhausted=True)
        return None
    trial = Trial(
        study_id=study_id,
        number=study.next_number,
        params=params,
        state="queued",
        source="sampler",
        attempt=0,
        stop_requested=False,
        metrics={},
        created_at=now,
    )
    study.next_number += 1
    session.add(trial)
    session.flush()
    return trial


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
    trial = get_trial(session, trial_id, lock=True)
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


def _stop_reason(session: Session, trial: Trial) -> str | None:
    study = get_study(session, trial.study_id)
    if study.state in ("stopped", "completed"):
        return f"study {study.state}"
    if trial.stop_requested:
        return "stop requested"
    return None


def heartbeat(
    session: Session, trial_id: int, worker_id: str, attempt: int, lease: timedelta
) -> ReportAck:
    trial = _held(session, trial_id, worker_id, attempt)
    trial.lease_expires_at = utcnow() + lease
    reason = _stop_reason(session, trial)
    return ReportAck(reason is not None, reason, trial.lease_expires_at)


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
    """Stores one step's metrics (idempotent per step) and says whether to stop."""
    trial = _held(session, trial_id, worker_id, attempt)
    now = utcnow()
    clean = finite_metrics(metrics)
    existing = session.scalars(
        select(TrialIntermediate).where(
            TrialIntermediate.trial_id == trial_id, TrialIntermediate.step == step
        )
    ).first()
    if existing is None:
        session.add(
            TrialIntermediate(
                trial_id=trial_id, step=step, attempt=attempt, metrics=clean, created_at=now
            )
        )
    else:
        existing.metrics, existing.attempt = clean, attempt
    trial.last_step = max(trial.last_step or 0, step)
    trial.lease_expires_at = now + lease
    reason = _stop_reason(session, trial)
    if reason is None and prune is not None:
        reason = prune(session, trial, step, clean)
    return ReportAck(reason is not None, reason, trial.lease_expires_at)


def complete(
    session: Session,
    trial_id: int,
    worker_id: str,
    attempt: int,
    metrics: Mapping[str, float | None],
    pruned: bool = False,
) -> Trial:
    trial = get_trial(session, trial_id, lock=True)
    if trial.state in ENDED_STATES and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial  # a resend of a completion this worker already made
    trial = _held(session, trial_id, worker_id, attempt)
    study = get_study(session, trial.study_id, lock=True)
    objective = spec_of(study).build_objective()
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
    trial = get_trial(session, trial_id, lock=True)
    if trial.state == "failed" and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial
    trial = _held(session, trial_id, worker_id, attempt)
    study = get_study(session, trial.study_id, lock=True)
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
    trial = get_trial(session, trial_id, lock=True)
    if trial.state == "queued":
        study = get_study(session, trial.study_id, lock=True)
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
