"""What the queue looks like now: the figures a scrape of ``/metrics`` reports as gauges.

Read from the database at scrape time rather than kept by each server process: with several
server processes (and hosts) any one of them answers a scrape, and only the database knows
the whole queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hpsearch.states import LIVE_STUDY, UNENDED, StudyState, TrialState
from hpsearch.store.models import Study, Trial, Worker


@dataclass(frozen=True)
class StudyQueue:
    study_id: int
    name: str
    state: str
    queued: int
    running: int
    startable: int
    """How many more trials workers could start now: queued ones and those the budget has yet
    to sample, no more than the study's parallelism leaves room for; 0 unless it is running.
    The figure to scale workers on."""


@dataclass(frozen=True)
class QueueGauges:
    studies: list[StudyQueue]
    live_workers: int


def startable(
    state: str, queued: int, running: int, unsampled: int, parallelism: int | None
) -> int:
    """Trials that a free worker could claim now (see :attr:`StudyQueue.startable`)."""
    if state != StudyState.RUNNING:
        return 0
    waiting = queued + max(0, unsampled)
    if parallelism is None:
        return waiting
    return max(0, min(waiting, parallelism - running))


def queue_gauges(session: Session, now: datetime, horizon: timedelta) -> QueueGauges:
    """Per unfinished study, its queue; and the workers alive: seen claiming within
    ``horizon`` (the lease length), or holding a lease that has not expired."""
    counts: dict[tuple[int, str], int] = {
        (study_id, state): n
        for study_id, state, n in session.execute(
            select(Trial.study_id, Trial.state, func.count())
            .where(Trial.state.in_(UNENDED))
            .group_by(Trial.study_id, Trial.state)
        ).all()
    }
    studies = []
    for study in session.scalars(
        select(Study).where(Study.state.in_(LIVE_STUDY)).order_by(Study.id)
    ):
        queued = counts.get((study.id, TrialState.QUEUED), 0)
        running = counts.get((study.id, TrialState.RUNNING), 0)
        parallelism = (study.spec.get("budget") or {}).get("parallelism")
        studies.append(
            StudyQueue(
                study.id,
                study.name,
                study.state,
                queued,
                running,
                startable(
                    study.state, queued, running, study.max_trials - study.next_number, parallelism
                ),
            )
        )
    seen = set(session.scalars(select(Worker.id).where(Worker.last_seen_at >= now - horizon)))
    holding = session.scalars(
        select(Trial.worker_id)
        .distinct()
        .where(
            Trial.state == TrialState.RUNNING,
            Trial.worker_id.is_not(None),
            or_(Trial.lease_expires_at.is_(None), Trial.lease_expires_at > now),
        )
    )
    seen.update(str(w) for w in holding)
    return QueueGauges(studies, len(seen))
