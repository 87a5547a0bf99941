"""A worker's health: one whose last trials all failed, of studies that succeed elsewhere, is
unhealthy (a broken GPU, a full disk); it stops claiming, and the workers page shows why.

Failures of a study that fails everywhere (a typo, the user's bug) are the study's, not the
worker's: that study pauses itself instead (see ``studies.finish_if_done``).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hpsearch.states import ENDED, TrialState
from hpsearch.store.models import Study, Trial, Worker

UNHEALTHY_AFTER = 3
"""A worker whose last this many trials failed is unhealthy."""


def note_failure(session: Session, worker_id: str) -> str | None:
    """After a trial of ``worker_id`` failed: marks the worker unhealthy when its last
    ``UNHEALTHY_AFTER`` ended trials all failed and one of their studies has a completed
    trial; returns why it is unhealthy (now or before), else None."""
    last = session.execute(
        select(Trial.state, Trial.number, Trial.error, Study.n_completed, Study.id)
        .join(Study, Study.id == Trial.study_id)
        .where(Trial.worker_id == worker_id, Trial.state.in_(ENDED))
        .order_by(Trial.finished_at.desc(), Trial.id.desc())
        .limit(UNHEALTHY_AFTER)
    ).all()
    failing = len(last) == UNHEALTHY_AFTER and all(row[0] == TrialState.FAILED for row in last)
    if failing and any(row[3] for row in last):
        _, number, error, _, study_id = last[0]
        lines = (error or "").strip().splitlines()
        reason = (
            f"its last {UNHEALTHY_AFTER} trials failed, of studies whose trials do complete "
            f"(study {study_id} trial {number}: {lines[-1] if lines else 'no error text'})"
        )
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id, Worker.unhealthy.is_(None))
            .values(unhealthy=reason)
        )
    return unhealthy(session, worker_id)


def unhealthy(session: Session, worker_id: str) -> str | None:
    """Why ``worker_id`` is unhealthy, or None (also for a worker never seen)."""
    return session.scalar(select(Worker.unhealthy).where(Worker.id == worker_id))
