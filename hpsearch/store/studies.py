"""Study-level queries and rules that run inside a caller's transaction.

Counts and the best trial are kept on the study row, updated when a trial ends, so that reading
a study never scans its trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, not_, select, true, update
from sqlalchemy.orm import Session

from hpsearch.errors import NotFound
from hpsearch.spec import BudgetSpec, StudySpec, failure_limit, parse_spec
from hpsearch.states import LIVE_STUDY, StudyState, TrialState
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.db import one_row
from hpsearch.store.evaluations import request_automatic
from hpsearch.store.models import Study, Trial, TrialEvent


@dataclass(frozen=True)
class StudyCounts:
    queued: int
    running: int
    completed: int
    pruned: int
    failed: int

    @property
    def ended(self) -> int:
        return self.completed + self.pruned + self.failed


def get_study(session: Session, study_id: int, *, lock: bool = False) -> Study:
    query = select(Study).where(Study.id == study_id)
    return one_row(session, query, lock, f"study {study_id} does not exist")


def get_trial(session: Session, trial_id: int, *, lock: bool = False) -> Trial:
    query = select(Trial).where(Trial.id == trial_id)
    return one_row(session, query, lock, f"trial {trial_id} does not exist")


def queued_trial(study: Study, number: int, params: dict[str, Any], source: str) -> Trial:
    """A trial put in ``study``'s queue by hand (``source``: user, fork) rather than sampled."""
    return Trial(
        study_id=study.id,
        number=number,
        params=params,
        state=TrialState.QUEUED,
        source=source,
        attempt=0,
        stop_requested=False,
        metrics={},
        created_at=utcnow(),
    )


def spec_of(study: Study) -> StudySpec:
    return parse_spec(study.spec)


def live_counts(session: Session, study_id: int) -> tuple[int, int]:
    """(queued, running) trials of a study: the two counts that change without ending.

    Through the session, which first writes the trials it holds changed. Where the study
    row is locked, this is a statement after the one that locked it (see ``sql.LIVE_COUNTS``).
    """
    queued, running = session.execute(sql.LIVE_COUNTS, {"b_study_id": study_id}).one()
    return queued, running


def counts(session: Session, study: Study) -> StudyCounts:
    queued, running = live_counts(session, study.id)
    return StudyCounts(queued, running, study.n_completed, study.n_pruned, study.n_failed)


@dataclass(frozen=True)
class Ranked:
    number: int
    value: float | None
    feasible: bool
    violation: float

    @classmethod
    def of(cls, t: Trial) -> Ranked:
        return cls(t.number, t.value, bool(t.feasible), t.violation or 0.0)


def finish_if_done(
    session: Session,
    study: Study,
    *,
    exhausted: bool = False,
    live: tuple[int, int] | None = None,
) -> bool:
    """Marks a running or paused study completed (or stopped) when its budget says so, or
    ``failed`` when every trial of it failed; pauses a study that only fails.

    ``exhausted`` is set by the claim path when the sampler has nothing left to propose;
    ``live`` is (queued, running) when the caller has just counted them.
    """
    if study.state not in LIVE_STUDY:
        return False
    spec = study.spec
    budget = spec.get("budget", {})
    queued, running = live if live is not None else live_counts(session, study.id)
    ended = study.n_completed + study.n_pruned + study.n_failed
    reason: str | None = None
    if ended >= budget.get("max_trials", 0) and not (queued or running):
        reason = f"max_trials ({budget['max_trials']}) reached"
    elif exhausted and not (queued or running):
        reason = "the sampler has proposed every configuration"
    elif _failing_from_the_start(study):
        # A broken setup (a typo, missing data) would burn the whole budget one failure at a
        # time: stop handing out trials until someone looks. Running trials go on.
        study.state, study.updated_at = StudyState.PAUSED, utcnow()
        study.reason = (
            f"the first {study.n_failed} trials all failed "
            f"({_last_failure(session, study.id)}); fix the cause, then resume"
        )
        return True
    elif study.n_failed >= (limit := failure_limit(budget.get("max_failures"), study.max_trials)):
        study.state = (
            StudyState.STOPPED if study.n_completed + study.n_pruned else StudyState.FAILED
        )
        study.reason = f"max_failures ({limit}) reached"
        study.finished_at = utcnow()
        _request_stop_running(session, study.id)
        drop_sampled_ahead(session, study.id)
        return True
    elif _target_reached(session, study):
        reason = f"target value {budget['target_value']} reached"
    elif _time_is_up(study):
        reason = f"time limit ({budget['time_limit_s']} s) reached"
    if reason is None:
        return False
    if queued or running:
        # Budgets by time or target end the study now; running trials are told to stop, and
        # queued ones fail (those a user asked for) or go (those sampled ahead).
        _request_stop_running(session, study.id)
        drop_sampled_ahead(session, study.id)
        failed = session.execute(
            update(Trial)
            .where(Trial.study_id == study.id, Trial.state == TrialState.QUEUED)
            .values(state=TrialState.FAILED, error=f"study ended: {reason}", finished_at=utcnow())
        )
        study.n_failed += failed.rowcount  # type: ignore[attr-defined]
    if not (study.n_completed or study.n_pruned or running):  # every trial failed
        study.state, study.reason = StudyState.FAILED, f"{reason}, every trial failed"
        study.finished_at = utcnow()
        return True
    study.state, study.reason, study.finished_at = StudyState.COMPLETED, reason, utcnow()
    request_automatic(session, study)  # the test evaluation, if the spec asks for it
    return True


FAILURES_BEFORE_PAUSE = 3
"""A study whose first trials all fail, this many of them, pauses itself."""


def _failing_from_the_start(study: Study) -> bool:
    """Whether ``study`` has had only failures, enough to pause it; once only (it keeps the
    reason when resumed, and the ``max_failures`` budget then decides)."""
    return (
        study.state == StudyState.RUNNING
        and study.reason is None
        and study.n_completed + study.n_pruned == 0
        and study.n_failed >= FAILURES_BEFORE_PAUSE
    )


def _last_failure(session: Session, study_id: int) -> str:
    """The last line of the latest failure of a study: the reason users need to see."""
    row = session.execute(
        select(Trial.number, Trial.error)
        .where(Trial.study_id == study_id, Trial.state == TrialState.FAILED)
        .order_by(Trial.finished_at.desc(), Trial.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return "no failed trial"
    lines = (row[1] or "").strip().splitlines()
    return f"trial {row[0]}: {lines[-1] if lines else 'no error text'}"


def may_finish(
    budget: BudgetSpec,
    max_trials: int,
    counters: tuple[int, int, int],
    best_trial_id: int | None,
    created_at: datetime,
    now: datetime,
) -> bool:
    """Whether :func:`finish_if_done` could end a study: the hot paths' cheap pre-check.

    ``max_trials`` is the study row's (see :func:`add_to_budget`), ``counters`` are
    (completed, pruned, failed). It may say yes when the study goes on (a target value is
    only compared by :func:`finish_if_done`), never no when it would end.
    """
    n_completed, n_pruned, n_failed = counters
    return bool(
        n_completed + n_pruned + n_failed >= max_trials
        or n_failed >= failure_limit(budget.max_failures, max_trials)
        or (n_completed + n_pruned == 0 and n_failed >= FAILURES_BEFORE_PAUSE)
        or (budget.target_value is not None and best_trial_id is not None)
        or time_is_up(budget.time_limit_s, created_at, now)
    )


def _target_reached(session: Session, study: Study) -> bool:
    target = study.spec.get("budget", {}).get("target_value")
    if target is None or study.best_trial_id is None:
        return False
    best = session.get(Trial, study.best_trial_id)
    if best is None or best.value is None:
        return False
    maximize = study.spec["objective"]["direction"] == "maximize"
    return bool(best.value >= target if maximize else best.value <= target)


def _time_is_up(study: Study) -> bool:
    limit = study.spec.get("budget", {}).get("time_limit_s")
    return time_is_up(limit, study.created_at, utcnow())


def time_is_up(time_limit_s: float | None, created_at: datetime, now: datetime) -> bool:
    """Whether a study created at ``created_at`` has used its time budget (if it has one)."""
    return time_limit_s is not None and (now - created_at).total_seconds() >= time_limit_s


def _sampled_ahead(study_id: int) -> tuple[ColumnElement[bool], ...]:
    """The trials of a study that a claim sampled ahead (claims.AHEAD) and nobody ran."""
    return (
        Trial.study_id == study_id,
        Trial.state == TrialState.QUEUED,
        Trial.source == "sampler",
        Trial.attempt == 0,
    )


def drop_sampled_ahead(session: Session, study_id: int) -> None:
    """Deletes the trials sampled ahead that never ran, when their study ends: they were
    never part of it, and must not count as failures. Their numbers stay unused."""
    session.execute(delete(Trial).where(*_sampled_ahead(study_id)))


def queue_ahead_of_sampler(session: Session, study: Study) -> int:
    """The number for a trial a user adds (an enqueued guess, a fork), which must run before
    the sampler's trials: the trials sampled ahead at the end of the queue are taken back and
    the study's next number rewound over them, so the user's trial is next in the queue
    (after any re-queued ones) and the numbers after it are sampled again.

    The study must be locked. Only a run of numbers at the end is taken back: a number left
    unused inside a study would keep its ``max_trials`` from ever being reached. So the
    trials sampled ahead are locked first (a claim then skips them); one a claim took
    meanwhile is running, and the numbers below it stay queued."""
    ahead = dict(
        session.execute(
            select(Trial.id, Trial.number).where(*_sampled_ahead(study.id)).with_for_update()
        ).all()
    )
    kept = select(func.max(Trial.number)).where(Trial.study_id == study.id)
    if ahead:
        kept = kept.where(Trial.id.not_in(list(ahead)))
    last = session.scalar(kept)
    tail = [i for i, number in ahead.items() if last is None or number > last]
    if tail:
        session.execute(delete(Trial).where(Trial.id.in_(tail)))
        study.next_number = 0 if last is None else last + 1
    number = study.next_number
    study.next_number += 1
    return number


def _request_stop_running(session: Session, study_id: int) -> None:
    session.execute(
        update(Trial)
        .where(Trial.study_id == study_id, Trial.state == TrialState.RUNNING)
        .values(stop_requested=True)
    )


def add_to_budget(study: Study, trials: int) -> None:
    """Raises ``max_trials`` for trials added by hand (enqueued, forked, imported), in the
    column the queue reads and in the spec users see."""
    study.max_trials += trials
    budget = {**study.spec["budget"], "max_trials": study.max_trials}
    study.spec = {**study.spec, "budget": budget}


def study_row(spec: StudySpec, spec_json: dict[str, Any]) -> Study:
    now = utcnow()
    return Study(
        name=spec.name,
        spec=spec_json,
        state=StudyState.RUNNING,
        next_number=0,
        max_trials=spec.budget.max_trials,
        n_completed=0,
        n_pruned=0,
        n_failed=0,
        created_at=now,
        updated_at=now,
    )


def trials_page(
    session: Session,
    study_id: int,
    *,
    order: str,
    offset: int,
    limit: int,
    states: Sequence[str] = (),
) -> list[Trial]:
    """A page of a study's trials, by ``number`` or by rank (best first)."""
    query = select(Trial).where(Trial.study_id == study_id)
    if states:
        query = query.where(Trial.state.in_(states))
    if order != "rank":
        return list(session.scalars(query.order_by(Trial.number).offset(offset).limit(limit)))
    study = get_study(session, study_id)
    maximize = study.spec["objective"]["direction"] == "maximize"
    by_value = Trial.value.desc() if maximize else Trial.value.asc()
    # The SQL form of objective.rank_key (a test holds the two equal): completed feasible
    # trials by value, then completed infeasible ones by violation, then the rest. The first
    # group is read through ix_trials_study_rank, so a top page never sorts the whole study.
    feasible = and_(
        Trial.state == TrialState.COMPLETED, Trial.feasible == true(), Trial.value.is_not(None)
    )
    # Its complement, NULL-safe (``feasible`` is NULL until a trial completes).
    others = not_(
        and_(
            Trial.state == TrialState.COMPLETED, Trial.feasible.is_(True), Trial.value.is_not(None)
        )
    )
    page = list(
        session.scalars(
            query.where(feasible).order_by(by_value, Trial.number).offset(offset).limit(limit)
        )
    )
    if len(page) == limit:
        return page
    n_feasible = offset + len(page)
    if not page:  # the page starts past the feasible trials: how far past?
        counted = select(func.count()).select_from(query.where(feasible).subquery())
        n_feasible = session.scalar(counted) or 0
    # Completed with a value (infeasible), then completed without one (diverged), then the
    # rest; the completed ones by violation.
    group = case(
        (and_(Trial.state == TrialState.COMPLETED, Trial.value.is_not(None)), 1),
        (Trial.state == TrialState.COMPLETED, 2),
        else_=3,
    )
    rest = query.where(others).order_by(
        group,
        case((group < 3, Trial.violation), else_=0.0),
        Trial.value.is_(None),
        by_value,
        Trial.number,
    )
    rest = rest.offset(max(0, offset - n_feasible)).limit(limit - len(page))
    return page + list(session.scalars(rest))


def lock_study_then_trial(session: Session, trial_id: int) -> tuple[Study, Trial]:
    """Locks in the store's one order (study, then trial); ``study_id`` never changes."""
    study_id = session.scalar(select(Trial.study_id).where(Trial.id == trial_id))
    if study_id is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study = get_study(session, study_id, lock=True)
    return study, get_trial(session, trial_id, lock=True)


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
