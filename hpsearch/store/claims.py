"""The trial queue, the claim side: which trial a worker gets next.

Rules (data, not code scattered through the worker):

- A claim takes the oldest queued trial of the oldest running study; if there is none and the
  study may grow (budget, parallelism), it samples a new trial *inside the same transaction*,
  with the study row locked, so parallel claimers never receive the same suggestion.
- A lease that expires puts the trial back in the queue (the next claim is ``attempt + 1``)
  until ``max_attempts``, then the trial fails with the reason kept (as it does at once when
  its study has ended: nothing would claim it again).
- A study out of time hands out nothing more, not even queued trials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.samplers import FinishedTrial, Sampler
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.history import read_history
from hpsearch.store.models import Study, Trial
from hpsearch.store.queue import record_event
from hpsearch.store.studies import finish_if_done, get_study, live_counts, record_ended

HistoryFor = Callable[[Session, Study], list[FinishedTrial]]


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
        record_event(session, trial, "lease_expired", f"worker {trial.worker_id} stopped answering")
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
    history_for: HistoryFor | None = None,
) -> Claim | None:
    """Leases one trial to ``worker_id``, sampling a new one when a study needs it.

    ``history_for(session, study)`` gives the sampler the study's ended trials (a cache that
    reads only new ones); without it they are read whole.

    Lock order, the same in every transaction of the store: a study row before any of its
    trial rows, and study rows in ascending id. Claimers take queued trials with ``SKIP
    LOCKED`` (never waiting on each other) and wait only on study rows, in that order, so no
    two transactions can wait on each other in a cycle.
    """
    now = utcnow()
    expires = now + lease
    connection = session.connection()
    expired = _expired(session, now)
    running = {
        sid: (created, limit)
        for sid, created, limit in connection.execute(sql.RUNNING_STUDIES, {"b_study_id": study_id})
    }
    for sid in sorted(running.keys() | expired.keys()):
        if sid in expired:
            requeue_expired(session, get_study(session, sid, lock=True), expired[sid], now)
        if sid not in running:
            continue
        created, limit = running[sid]
        if limit is not None and (now - created).total_seconds() >= limit:
            # Out of time: no more trials, not even queued ones; the study ends here.
            finish_if_done(session, get_study(session, sid, lock=True))
            continue
        claimed = _claim_queued(session, sid, worker_id, now, expires) or _sample_new(
            session, sid, sampler_for, worker_id, now, expires, history_for
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
    history_for: HistoryFor | None = None,
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
    past: list[FinishedTrial] = []
    if sampler.needs_history:
        past = history_for(session, study) if history_for else history(session, study_id)
    running_params = _running_params(session, study_id) if sampler.needs_history else []
    number = study.next_number
    params = sampler.propose(number, past, running_params)
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


def history(session: Session, study_id: int) -> list[FinishedTrial]:
    return read_history(session, study_id)


def _running_params(session: Session, study_id: int) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            select(Trial.params).where(Trial.study_id == study_id, Trial.state == "running")
        )
    )
