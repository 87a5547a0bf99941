"""The trial queue, the lease side: heartbeat, report, complete, fail, release, stop.

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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, LeaseLost, NotFound
from hpsearch.objective import rank_key
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.models import ENDED_STATES, Study, Trial, TrialEvent
from hpsearch.store.rules import RulesFor, StudyRules
from hpsearch.store.studies import (
    Ranked,
    finish_if_done,
    get_study,
    get_trial,
    may_finish,
    record_ended,
)

# Violations can be infinite (an unmeasured satisficing metric); SQL floats and JSON cannot
# all hold that, so it is stored as the largest finite double.
STORED_INFINITY = 1.7976931348623157e308


@dataclass(frozen=True)
class ReportAck:
    should_stop: bool
    reason: str | None
    lease_expires_at: datetime


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


Steps = Sequence[tuple[int, Mapping[str, float | None]]]


def report(
    session: Session,
    trial_id: int,
    worker_id: str,
    attempt: int,
    steps: Steps,
    lease: timedelta,
    prune: Any = None,
) -> ReportAck:
    """Stores reported steps (idempotent per step) and says whether to stop.

    ``steps`` are one step's metrics, or several that the worker held back (oldest first):
    they are stored together and judged in order. ``prune(session, trial, step, metrics)``
    is asked only when the study declares a pruner; the first step it stops ends the judging.
    """
    study_id, stop_requested, expires = _extend_lease(
        session, trial_id, worker_id, attempt, lease, max(step for step, _ in steps)
    )
    cleaned = [(step, finite_metrics(metrics)) for step, metrics in steps]
    connection = session.connection()
    store_steps(session, trial_id, attempt, cleaned)
    state, pruner = connection.execute(sql.STUDY_STATE_AND_PRUNER, {"b_study_id": study_id}).one()
    reason = _stop_reason(state, stop_requested)
    if reason is None and prune is not None and pruner and pruner.get("kind") != "none":
        trial = get_trial(session, trial_id)
        for step, clean in sorted(cleaned, key=lambda s: s[0]):
            reason = prune(session, trial, step, clean)
            if reason is not None:
                break
    return ReportAck(reason is not None, reason, expires)


def store_steps(
    session: Session, trial_id: int, attempt: int, steps: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """Upserts reported steps in one statement (a resent or re-run step replaces its row;
    of a step sent twice in one batch, the later wins)."""
    if not steps:
        return
    connection = session.connection()
    unique = {step: metrics for step, metrics in steps}
    connection.execute(
        sql.upsert_steps(connection.dialect.name),
        {
            "trial_id": trial_id,
            "attempt": attempt,
            "now": utcnow(),
            "steps": json.dumps([{"step": k, "metrics": m} for k, m in unique.items()]),
        },
    )


def lock_study_then_trial(session: Session, trial_id: int) -> tuple[Study, Trial]:
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
    rules_for: RulesFor,
    pruned: bool = False,
    steps: Steps = (),
) -> Trial:
    """Ends a trial with its final metrics, after storing the ``steps`` not yet reported.

    The hot path, one trial ended per call: the study row is locked and read in one
    statement; the trial is ended (its lease checked), its steps, events and the study's
    counters written in one more on PostgreSQL, four on SQLite (which has one writer at a
    time anyway). The ORM is only asked when the study may be ending or the lease check
    fails (to say why, or to answer a resent completion).
    """
    connection = session.connection()
    study = connection.execute(sql.LOCK_STUDY_OF_TRIAL, {"b_trial_id": trial_id}).one_or_none()
    if study is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study_id, created, _, _, n_completed, n_pruned, n_failed, best_id, max_trials, number = study
    rules = rules_for(session, (study_id, created))
    clean = finite_metrics(metrics)
    evaluation = rules.objective.evaluate(clean)
    state = "pruned" if pruned else "completed"
    events: list[tuple[str, str | None]] = []
    if not evaluation.feasible:
        events.append(("infeasible", "broke " + ", ".join(evaluation.broken)))
    events.append((state, None))
    new_best: Ranked | None = None
    if pruned:
        n_pruned += 1
    else:
        n_completed += 1
        if evaluation.feasible and evaluation.value is not None:
            new_best = Ranked(number, evaluation.value, True, 0.0)
            if not _beats(session, new_best, best_id, rules):
                new_best = None
    ended = _Ended(
        trial_id=trial_id,
        worker_id=worker_id,
        attempt=attempt,
        now=utcnow(),
        state=state,
        metrics=clean,
        value=evaluation.value,
        feasible=evaluation.feasible,
        violation=min(evaluation.violation, STORED_INFINITY),
        steps=[(step, finite_metrics(m)) for step, m in steps],
        events=events,
        study_id=study_id,
        counters=(n_completed, n_pruned, n_failed),
        best_trial_id=trial_id if new_best is not None else best_id,
    )
    row = (
        _end_pg(session, ended) if connection.dialect.name == "postgresql" else _end(session, ended)
    )
    if row is None:
        return _resent_or_refused(session, trial_id, worker_id, attempt)
    if new_best is not None:
        if len(rules.best_ranks) > 64:  # a long study has had many bests, never asked again
            rules.best_ranks.clear()
        rules.best_ranks[trial_id] = new_best
    if may_finish(
        rules.spec.budget, max_trials, ended.counters, ended.best_trial_id, created, ended.now
    ):
        finish_if_done(session, get_study(session, study_id, lock=True))
    return Trial(**row._mapping)


@dataclass(frozen=True)
class _Ended:
    """What ending a held trial writes: the trial, its steps and events, the study's counters."""

    trial_id: int
    worker_id: str
    attempt: int
    now: datetime
    state: str
    metrics: dict[str, float | None]
    value: float | None
    feasible: bool
    violation: float
    steps: list[tuple[int, dict[str, float | None]]]
    events: list[tuple[str, str | None]]
    study_id: int
    counters: tuple[int, int, int]
    best_trial_id: int | None

    @property
    def last_step(self) -> int | None:
        return max((step for step, _ in self.steps), default=None)


def _end_pg(session: Session, e: _Ended) -> Row[Any] | None:
    return (
        session.connection()
        .execute(
            sql.END_TRIAL_AND_COUNT_PG,
            {
                "trial_id": e.trial_id,
                "worker_id": e.worker_id,
                "attempt": e.attempt,
                "now": e.now,
                "state": e.state,
                "metrics": json.dumps(e.metrics),
                "value": e.value,
                "feasible": e.feasible,
                "violation": e.violation,
                "step": e.last_step,
                "steps": json.dumps([{"step": k, "metrics": m} for k, m in dict(e.steps).items()]),
                "events": json.dumps([{"kind": k, "detail": d} for k, d in e.events]),
                "study_id": e.study_id,
                "n_completed": e.counters[0],
                "n_pruned": e.counters[1],
                "best_trial_id": e.best_trial_id,
            },
        )
        .one_or_none()
    )


def _end(session: Session, e: _Ended) -> Row[Any] | None:
    """:func:`_end_pg` in the statements any database runs."""
    connection = session.connection()
    row = connection.execute(
        sql.END_HELD_TRIAL,
        {
            "b_trial_id": e.trial_id,
            "b_worker_id": e.worker_id,
            "b_attempt": e.attempt,
            "b_now": e.now,
            "b_state": e.state,
            "b_metrics": e.metrics,
            "b_value": e.value,
            "b_feasible": e.feasible,
            "b_violation": e.violation,
            "b_step": e.last_step,
        },
    ).one_or_none()
    if row is None:
        return None
    store_steps(session, e.trial_id, e.attempt, e.steps)
    connection.execute(
        sql.INSERT_EVENT,
        [
            {
                "b_trial_id": e.trial_id,
                "b_kind": kind,
                "b_attempt": e.attempt,
                "b_worker_id": e.worker_id,
                "b_detail": detail,
                "b_created_at": e.now,
            }
            for kind, detail in e.events
        ],
    )
    connection.execute(
        sql.SET_STUDY_COUNTERS,
        {
            "b_study_id": e.study_id,
            "b_n_completed": e.counters[0],
            "b_n_pruned": e.counters[1],
            "b_n_failed": e.counters[2],
            "b_best_trial_id": e.best_trial_id,
            "b_now": e.now,
        },
    )
    return row


def _beats(session: Session, challenger: Ranked, best_id: int | None, rules: StudyRules) -> bool:
    """Whether a feasible completed trial ranks above the study's best so far."""
    if best_id is None:
        return True
    holder = rules.best_ranks.get(best_id)
    if holder is None:
        row = session.connection().execute(sql.RANK_OF_TRIAL, {"b_trial_id": best_id}).first()
        if row is None:
            return True
        number, value, feasible, violation = row
        holder = Ranked(number, value, bool(feasible), violation or 0.0)
    direction = rules.spec.objective.direction
    return rank_key(challenger, direction) < rank_key(holder, direction)


def _resent_or_refused(session: Session, trial_id: int, worker_id: str, attempt: int) -> Trial:
    """A completion whose lease check failed: the same trial again if this worker already
    ended it (its first reply was lost), else LeaseLost saying why."""
    trial = get_trial(session, trial_id, lock=True)
    if trial.state in ENDED_STATES and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial
    _check_held(trial, worker_id, attempt)  # raises, saying why
    raise LeaseLost(f"trial {trial_id} is no longer leased to {worker_id}")


def fail(session: Session, trial_id: int, worker_id: str, attempt: int, error: str) -> Trial:
    study, trial = lock_study_then_trial(session, trial_id)
    if trial.state == "failed" and trial.worker_id == worker_id and trial.attempt == attempt:
        return trial
    _check_held(trial, worker_id, attempt)
    trial.state = "failed"
    trial.error = error
    trial.finished_at = utcnow()
    trial.lease_expires_at = None
    record_event(
        session, trial, "failed", error.strip().splitlines()[-1] if error.strip() else None
    )
    record_ended(session, study, trial)
    finish_if_done(session, study)
    return trial


def release(session: Session, trial_id: int, worker_id: str, attempt: int, why: str) -> Trial:
    """A worker hands a trial back unfinished (SIGTERM): it returns to the queue at once."""
    trial = _held(session, trial_id, worker_id, attempt)
    trial.state = "queued"
    trial.lease_expires_at = None
    record_event(session, trial, "released", why)
    return trial


def request_stop(session: Session, trial_id: int) -> Trial:
    study, trial = lock_study_then_trial(session, trial_id)
    if trial.state == "queued":
        trial.state, trial.error, trial.finished_at = "failed", "stopped by user", utcnow()
        record_ended(session, study, trial)
        finish_if_done(session, study)
    elif trial.state == "running":
        trial.stop_requested = True
    else:
        raise InvalidState(f"trial {trial_id} is already {trial.state}")
    record_event(session, trial, "stop_requested", None)
    return trial


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metrics as stored: numbers kept, NaN and ±inf recorded as missing (``None``)."""
    out: dict[str, float | None] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[name] = float(value) if math.isfinite(value) else None
    return out


def record_event(session: Session, trial: Trial, kind: str, detail: str | None) -> None:
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
