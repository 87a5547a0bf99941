"""Read-only queries for the results view: light rows, not ORM objects, so 100 000 trials load
in one pass without building an identity map.

They run inside a caller's transaction (see :class:`hpsearch.store.repository.Store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.states import ENDED, TrialState
from hpsearch.store.models import Trial, TrialIntermediate, Worker


@dataclass(frozen=True)
class TrialPoint:
    """What plots and importance need of one ended trial."""

    id: int
    number: int
    state: str
    value: float | None
    feasible: bool | None
    violation: float | None
    params: dict[str, Any]
    metrics: dict[str, float | None]
    last_step: int | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TrialRecord:
    """One trial as an export row: everything but its steps and events."""

    id: int
    number: int
    state: str
    source: str
    attempt: int
    worker_id: str | None
    value: float | None
    feasible: bool | None
    params: dict[str, Any]
    metrics: dict[str, float | None]
    test_metrics: dict[str, float | None] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class CurvePoint:
    """One reported step of one trial."""

    step: int
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class TrialCurve:
    """A trial's reported steps, with what a plot labels it by."""

    id: int
    study_id: int
    number: int
    state: str
    points: list[CurvePoint]


@dataclass(frozen=True)
class RunningTrial:
    id: int
    study_id: int
    number: int
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class WorkerActivity:
    """A worker and the trials it holds now."""

    id: str
    host: str
    devices: list[Any]
    created_at: datetime
    last_seen_at: datetime
    running: list[RunningTrial] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    unhealthy: str | None = None
    exited_at: datetime | None = None


def trial_points(
    session: Session,
    study_id: int,
    metrics: Sequence[str] | None = None,
    since: datetime | None = None,
) -> list[TrialPoint]:
    """The study's ended trials, by number.

    ``metrics`` names the metrics to read (each pulled out of the JSON column by the
    database, so 100 000 trials do not decode every metric they report); ``None`` reads all.
    ``since`` keeps the trials that ended at or after that time, for incremental reloads.
    """
    columns = [
        Trial.id,
        Trial.number,
        Trial.state,
        Trial.value,
        Trial.feasible,
        Trial.violation,
        Trial.params,
        Trial.last_step,
        Trial.finished_at,
    ]
    names = list(metrics) if metrics is not None else []
    picked = (
        [Trial.metrics[m].as_float() for m in names] if metrics is not None else [Trial.metrics]
    )
    query = select(*columns, *picked).where(Trial.study_id == study_id, Trial.state.in_(ENDED))
    if since is not None:
        query = query.where(Trial.finished_at >= since)
    out = []
    for row in session.execute(query.order_by(Trial.number)):
        r: Any = row
        found = dict(zip(names, r[9:], strict=True)) if metrics is not None else r[9]
        out.append(TrialPoint(r[0], r[1], r[2], r[3], r[4], r[5], r[6], found, r[7], r[8]))
    return out


def trial_records(session: Session, study_id: int) -> list[TrialRecord]:
    """Every trial of a study, by number, as light rows for an export."""
    rows = session.execute(
        select(
            Trial.id,
            Trial.number,
            Trial.state,
            Trial.source,
            Trial.attempt,
            Trial.worker_id,
            Trial.value,
            Trial.feasible,
            Trial.params,
            Trial.metrics,
            Trial.test_metrics,
            Trial.error,
            Trial.created_at,
            Trial.started_at,
            Trial.finished_at,
        )
        .where(Trial.study_id == study_id)
        .order_by(Trial.number)
    ).all()
    return [TrialRecord(*row) for row in rows]


def curves(session: Session, trial_ids: Sequence[int]) -> list[TrialCurve]:
    """The given trials (in that order; unknown ids left out) with their reported steps.

    Only these trials' steps are read: a study may hold millions.
    """
    ids = list(dict.fromkeys(trial_ids))
    if not ids:
        return []
    heads = {
        row.id: row
        for row in session.execute(
            select(Trial.id, Trial.study_id, Trial.number, Trial.state).where(Trial.id.in_(ids))
        ).all()
    }
    points: dict[int, list[CurvePoint]] = {i: [] for i in heads}
    for trial_id, step, metrics in session.execute(
        select(TrialIntermediate.trial_id, TrialIntermediate.step, TrialIntermediate.metrics)
        .where(TrialIntermediate.trial_id.in_(list(heads)))
        .order_by(TrialIntermediate.trial_id, TrialIntermediate.step)
    ).all():
        points[trial_id].append(CurvePoint(step, metrics))
    return [
        TrialCurve(i, heads[i].study_id, heads[i].number, heads[i].state, points[i])
        for i in ids
        if i in heads
    ]


def worker_activity(session: Session) -> list[WorkerActivity]:
    """Each worker, most recently seen first, with the trials it is running."""
    running: dict[str, list[RunningTrial]] = {}
    for worker_id, trial_id, study_id, number, lease in session.execute(
        select(Trial.worker_id, Trial.id, Trial.study_id, Trial.number, Trial.lease_expires_at)
        .where(Trial.state == TrialState.RUNNING, Trial.worker_id.is_not(None))
        .order_by(Trial.study_id, Trial.number)
    ).all():
        running.setdefault(str(worker_id), []).append(
            RunningTrial(trial_id, study_id, number, lease)
        )
    return [
        WorkerActivity(
            w.id,
            w.host,
            list(w.devices or []),
            w.created_at,
            w.last_seen_at,
            running.get(w.id, []),
            dict(w.labels or {}),
            w.unhealthy,
            w.exited_at,
        )
        for w in session.scalars(select(Worker).order_by(Worker.last_seen_at.desc()))
    ]
