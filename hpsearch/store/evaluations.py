"""The final test evaluation: the one trial of a study whose model meets the test set.

Select on dev, report on test: the test set is evaluated once, for the trial the user chooses
as final (by default the best feasible one), so the figure it gives is not biased by the
selection. A study therefore has at most one final evaluation; asking again for the same trial
returns it (and retries it if it failed), asking for another trial is refused.

The evaluation is a job that workers lease like a trial: claim, heartbeat, complete or fail;
a lease that expires returns it to the queue until the study's ``max_attempts``. Its result
goes to ``Trial.test_metrics``, a column that ranking and sampling never read.

This module needs only the models (``studies.finish_if_done`` calls :func:`request_automatic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidInput, InvalidState, NotFound
from hpsearch.objective import finite
from hpsearch.states import UNENDED, TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.db import one_row
from hpsearch.store.lease import Claim, Holder, already_ended, check_lease
from hpsearch.store.models import FinalEvaluation, Study, Trial

TEST_PREFIX = "test_"


def of_study(session: Session, study_id: int) -> FinalEvaluation | None:
    return session.scalars(
        select(FinalEvaluation).where(FinalEvaluation.study_id == study_id)
    ).first()


def request(
    session: Session, study_id: int, trial_id: int | None, source: str = "user"
) -> FinalEvaluation:
    """Queues the test evaluation of ``trial_id`` (default: the best feasible trial)."""
    study = _study(session, study_id)
    if trial_id is None:
        if study.best_trial_id is None:
            raise InvalidState(
                f"study {study_id} has no feasible completed trial to evaluate on the test set"
            )
        trial_id = study.best_trial_id
    trial = session.get(Trial, trial_id)
    if trial is None or trial.study_id != study_id:
        raise InvalidInput("trial_id", f"trial {trial_id} is not a trial of study {study_id}")
    if trial.state != TrialState.COMPLETED:
        raise InvalidState(
            f"trial {trial_id} is {trial.state}: only a completed trial has a final model"
        )
    existing = of_study(session, study_id)
    if existing is not None:
        if existing.trial_id != trial_id:
            raise InvalidState(
                f"study {study_id} already evaluated trial {existing.trial_id} on the test set; "
                "evaluating another would turn the test set into a selection set"
            )
        if existing.state == TrialState.FAILED:
            existing.state, existing.error, existing.attempt = TrialState.QUEUED, None, 0
            existing.finished_at = None
        return existing
    evaluation = FinalEvaluation(
        study_id=study_id,
        trial_id=trial_id,
        state=TrialState.QUEUED,
        source=source,
        attempt=0,
        created_at=utcnow(),
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def request_automatic(session: Session, study: Study) -> None:
    """At the end of a study whose spec says ``evaluate_test: true``: its best feasible trial."""
    if not study.spec.get("evaluate_test") or study.best_trial_id is None:
        return
    if of_study(session, study.id) is None:
        request(session, study.id, study.best_trial_id, source="auto")


def pending(session: Session, study_id: int | None = None) -> bool:
    """Whether some evaluation (of ``study_id``) waits for a worker or is being run."""
    query = select(FinalEvaluation.id).where(FinalEvaluation.state.in_(UNENDED))
    if study_id is not None:
        query = query.where(FinalEvaluation.study_id == study_id)
    return session.scalars(query.limit(1)).first() is not None


def claimable(session: Session, study_id: int | None, now: datetime) -> bool:
    """A cheap read for the claim path: is there a queued or abandoned evaluation?"""
    query = select(FinalEvaluation.id).where(_claimable(now))
    if study_id is not None:
        query = query.where(FinalEvaluation.study_id == study_id)
    return session.scalars(query.limit(1)).first() is not None


def claim(
    session: Session, worker_id: str, lease: timedelta, study_id: int | None = None
) -> Claim | None:
    now = utcnow()
    query = (
        select(FinalEvaluation)
        .where(_claimable(now))
        .order_by(FinalEvaluation.id)
        .with_for_update(skip_locked=True)
    )
    if study_id is not None:
        query = query.where(FinalEvaluation.study_id == study_id)
    for evaluation in session.scalars(query).all():
        study = _study(session, evaluation.study_id)
        if evaluation.state == TrialState.RUNNING:  # its worker stopped answering
            max_attempts = study.spec.get("budget", {}).get("max_attempts", 3)
            if evaluation.attempt >= max_attempts:
                evaluation.state, evaluation.finished_at = TrialState.FAILED, now
                evaluation.error = (
                    f"lease expired on each of {evaluation.attempt} attempts "
                    f"(last worker: {evaluation.worker_id})"
                )
                evaluation.lease_expires_at = None
                continue
        evaluation.state = TrialState.RUNNING
        evaluation.attempt += 1
        evaluation.worker_id = worker_id
        evaluation.lease_expires_at = now + lease
        return _claim_of(session, evaluation, study)
    return None


def held_by(session: Session, worker_id: str, now: datetime) -> Claim | None:
    """The evaluation leased to ``worker_id``, if its lease still runs."""
    evaluation = session.scalars(
        select(FinalEvaluation)
        .where(
            FinalEvaluation.state == TrialState.RUNNING,
            FinalEvaluation.worker_id == worker_id,
            FinalEvaluation.lease_expires_at >= now,
        )
        .order_by(FinalEvaluation.id)
        .limit(1)
    ).first()
    if evaluation is None:
        return None
    return _claim_of(session, evaluation, _study(session, evaluation.study_id))


def _claim_of(session: Session, evaluation: FinalEvaluation, study: Study) -> Claim:
    trial = session.get(Trial, evaluation.trial_id)
    assert trial is not None  # the foreign key cascades
    assert evaluation.lease_expires_at is not None  # a running evaluation is leased
    return Claim(
        trial_id=trial.id,
        study_id=study.id,
        number=trial.number,
        attempt=evaluation.attempt,
        params=dict(trial.params),
        task=dict(study.spec["task"]),
        lease_expires_at=evaluation.lease_expires_at,
        resume_step=trial.last_step,
        kind="evaluate_test",
    )


def heartbeat(session: Session, holder: Holder, lease: timedelta) -> datetime:
    evaluation = _held(session, holder)
    evaluation.lease_expires_at = utcnow() + lease
    return evaluation.lease_expires_at


def complete(
    session: Session, holder: Holder, metrics: Mapping[str, float | None]
) -> FinalEvaluation:
    resent = _resent(session, holder, TrialState.COMPLETED)
    if resent is not None:
        return resent
    evaluation = _held(session, holder)
    others = sorted(name for name in metrics if not name.startswith(TEST_PREFIX))
    if others or not metrics:
        raise InvalidInput(
            "metrics",
            f"final test metrics are named {TEST_PREFIX}* (got {others or 'none'}); "
            "dev and train metrics come with the trial's completion",
        )
    trial = session.get(Trial, holder.trial_id)
    assert trial is not None
    trial.test_metrics = {name: finite(v) for name, v in metrics.items()}
    evaluation.state, evaluation.finished_at = TrialState.COMPLETED, utcnow()
    evaluation.lease_expires_at = None
    return evaluation


def fail(session: Session, holder: Holder, error: str) -> FinalEvaluation:
    resent = _resent(session, holder, TrialState.FAILED)
    if resent is not None:
        return resent
    evaluation = _held(session, holder)
    evaluation.state, evaluation.error, evaluation.finished_at = TrialState.FAILED, error, utcnow()
    evaluation.lease_expires_at = None
    return evaluation


def _claimable(now: datetime) -> Any:
    return or_(
        FinalEvaluation.state == TrialState.QUEUED,
        (FinalEvaluation.state == TrialState.RUNNING) & (FinalEvaluation.lease_expires_at < now),
    )


def _of_trial(session: Session, trial_id: int, *, lock: bool = False) -> FinalEvaluation:
    query = select(FinalEvaluation).where(FinalEvaluation.trial_id == trial_id)
    return one_row(session, query, lock, f"trial {trial_id} has no test evaluation")


def _held(session: Session, holder: Holder) -> FinalEvaluation:
    """The evaluation, locked, if ``holder`` still holds its lease (see :mod:`.lease`); else
    LeaseLost."""
    evaluation = _of_trial(session, holder.trial_id, lock=True)
    check_lease(evaluation, holder, f"the test evaluation of trial {holder.trial_id}")
    return evaluation


def _resent(session: Session, holder: Holder, state: str) -> FinalEvaluation | None:
    """The evaluation, if this worker already ended it so (its first reply was lost)."""
    evaluation = _of_trial(session, holder.trial_id, lock=True)
    return evaluation if already_ended(evaluation, holder, [state]) else None


def _study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    return study
