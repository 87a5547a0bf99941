"""Which trials have a checkpoint: the database's record of the artifact store's files.

The bytes live in the artifact store (:mod:`hpsearch.artifacts`); the trial row says whether
they are this trial's (``checkpoint_step``), so a file left under a reused id is never served.
A checkpoint is published inside the transaction that checks the uploader's lease, so a worker
that lost its trial cannot replace the checkpoint of the attempt that took it over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.store import queue
from hpsearch.store.lease import Holder, holds_lease
from hpsearch.store.models import FinalEvaluation, Trial
from hpsearch.store.studies import get_trial


def record(
    session: Session,
    holder: Holder,
    step: int,
    lease: timedelta,
    publish: Callable[[bool], object],
) -> None:
    """Checks the lease (and extends it, an upload is a sign of life), then ``publish(fresh)``
    puts the file in place; ``fresh`` is True for the trial's first checkpoint."""
    queue.heartbeat(session, holder, lease)
    trial = get_trial(session, holder.trial_id, lock=True)
    publish(trial.checkpoint_step is None)
    trial.checkpoint_step = step


def step_of(session: Session, trial_id: int) -> int | None:
    """The trial's checkpoint step; NotFound for an unknown trial."""
    step = session.scalars(select(Trial.checkpoint_step).where(Trial.id == trial_id)).first()
    if step is None:
        get_trial(session, trial_id)  # raises NotFound when the trial does not exist
    return step


def readable_by_holder(session: Session, holder: Holder) -> bool:
    """Whether ``holder`` holds the lease of the trial (it resumes the trial, or runs the fork
    that starts from it) or of the trial's final test evaluation (it evaluates the trial's
    model): the workers that may read the trial's checkpoint."""
    trial = session.get(Trial, holder.trial_id)
    if trial is None:
        return False
    if holds_lease(trial, holder):
        return True
    query = select(FinalEvaluation).where(FinalEvaluation.trial_id == holder.trial_id)
    evaluation = session.scalars(query).first()
    return evaluation is not None and holds_lease(evaluation, holder)
