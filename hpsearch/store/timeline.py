"""When each trial of a study ran, and on which worker: the study page's timeline.

A read of its own, apart from the store's other queries, so the page can ask for it only when
the timeline is scrolled into view. Only the latest ``limit`` trials to have started are read:
a timeline of 100 000 bars is a solid block, the recent ones show how workers are used now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.store.models import Trial


@dataclass(frozen=True)
class Span:
    number: int
    state: str
    worker_id: str | None
    started_at: datetime
    finished_at: datetime | None  # None while it runs


def trial_spans(session: Session, study_id: int, limit: int) -> list[Span]:
    """The ``limit`` trials of the study that started last, by start time."""
    rows = session.execute(
        select(Trial.number, Trial.state, Trial.worker_id, Trial.started_at, Trial.finished_at)
        .where(Trial.study_id == study_id, Trial.started_at.is_not(None))
        .order_by(Trial.started_at.desc(), Trial.number.desc())
        .limit(limit)
    ).all()
    return [
        Span(r.number, str(r.state), r.worker_id, r.started_at, r.finished_at)
        for r in reversed(rows)
    ]
