"""A trial ends here: the one module that owns what ending a trial writes.

A trial ends in four ways, and each goes through this module:

- its worker completes it (:class:`Completion`): :func:`ending` decides the state, metrics,
  events and error, and both completion paths write what it says (a transaction step by
  step, :func:`hpsearch.store.completion.complete`; PostgreSQL's one statement,
  :func:`hpsearch.store.postgres.complete_at_once`), moving the counters by :func:`counted`;
- its worker fails it (:func:`hpsearch.store.queue.fail`),
- its lease expires on its last attempt, or after its study ended
  (:func:`hpsearch.store.claims.requeue_expired`),
- a user stops it while it is queued (:func:`hpsearch.store.queue.request_stop`):
  these three call :func:`end`.

One more ending is a study's own: when a time limit or a target value ends a study, its
queued trials fail together in one statement, and its failed counter moves by their count
(:func:`hpsearch.store.studies.finish_if_done`).

Whatever the way, an ended trial has its final state, ``finished_at`` and no lease (its
``worker_id`` and ``attempt`` stay those of the attempt that ended it, which is how a resent
ending is recognised: :func:`hpsearch.store.lease.already_ended`); the study's counters and
best trial move (:func:`count_ended`), and the study may end with it
(:func:`hpsearch.store.studies.finish_if_done`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.objective import finite_metrics, rank_key
from hpsearch.states import TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.lease import Holder, Steps
from hpsearch.store.models import STORED_INFINITY, Study, Trial
from hpsearch.store.rules import StudyRules
from hpsearch.store.studies import Ranked, finish_if_done, record_event

# (completed, pruned, failed): the study's counters of ended trials.
Counters = tuple[int, int, int]


def counted(state: str, counters: Counters) -> Counters:
    """``counters`` after a trial ended in ``state`` (unchanged for a state that is not an
    ending)."""
    completed, pruned, failed = counters
    if state == TrialState.COMPLETED:
        return completed + 1, pruned, failed
    if state == TrialState.PRUNED:
        return completed, pruned + 1, failed
    if state == TrialState.FAILED:
        return completed, pruned, failed + 1
    return counters


# -- failed by its worker, expired, stopped while queued: the ORM path -----------------------


def end(
    session: Session,
    study: Study,
    trial: Trial,
    state: TrialState,
    error: str | None,
    *,
    event: tuple[str, str | None] | None = None,
    now: datetime | None = None,
    finish_study: bool = True,
) -> None:
    """Ends ``trial`` of ``study`` (both locked by the caller, study first) in ``state``.

    ``event``: the trial event that says how it ended, if the caller has not recorded one.
    ``finish_study=False``: the caller ends several trials and asks once, after the last,
    whether the study is done.
    """
    trial.state = state
    trial.error = error
    trial.finished_at = now or utcnow()
    trial.lease_expires_at = None
    if event is not None:
        record_event(session, trial, *event)
    count_ended(session, study, trial)
    if finish_study:
        finish_if_done(session, study)


def count_ended(session: Session, study: Study, trial: Trial) -> None:
    """Moves the study's counters and best trial for ``trial``, which has just ended (or was
    imported ended)."""
    study.n_completed, study.n_pruned, study.n_failed = counted(
        trial.state, (study.n_completed, study.n_pruned, study.n_failed)
    )
    if trial.state == TrialState.COMPLETED and trial.feasible and trial.value is not None:
        _maybe_new_best(session, study, trial)
    study.updated_at = utcnow()


def _maybe_new_best(session: Session, study: Study, trial: Trial) -> None:
    direction = study.spec["objective"]["direction"]
    if study.best_trial_id is None:
        study.best_trial_id = trial.id
        return
    # Only the ranking columns, and no autoflush: this runs once per completed trial.
    current = session.execute(
        select(Trial.number, Trial.value, Trial.feasible, Trial.violation).where(
            Trial.id == study.best_trial_id
        ),
        execution_options={"autoflush": False},
    ).first()
    if current is None or rank_key(Ranked.of(trial), direction) < rank_key(
        Ranked(current[0], current[1], bool(current[2]), current[3] or 0.0), direction
    ):
        study.best_trial_id = trial.id


# -- completed by its worker: what both completion paths write -------------------------------


@dataclass(frozen=True)
class Completion:
    """What a worker sends to end a trial it holds: its final metrics, whether the pruner
    stopped it, and the steps it had not reported yet."""

    holder: Holder
    metrics: Mapping[str, float | None]
    pruned: bool = False
    steps: Steps = ()
    # A trial the worker held ahead and started as this one ended (see Store.held_trial_started).
    started: int | None = None


@dataclass(frozen=True)
class Ending:
    """What ending a held trial writes: the trial, its steps and events, and how the study's
    counters move."""

    holder: Holder
    now: datetime
    state: TrialState
    metrics: dict[str, float | None]
    value: float | None
    feasible: bool | None
    violation: float | None
    steps: list[tuple[int, dict[str, float | None]]]
    events: list[tuple[str, str | None]]
    # Why the trial failed instead of completing (it never reported its objective).
    error: str | None = None

    @property
    def last_step(self) -> int | None:
        return max((step for step, _ in self.steps), default=None)

    @property
    def may_be_best(self) -> bool:
        return self.state == TrialState.COMPLETED and bool(self.feasible) and self.value is not None


def ending(rules: StudyRules, c: Completion) -> Ending:
    """What ending the trial as ``c`` asks writes, by the study's ``rules``."""
    metrics, pruned = c.metrics, c.pruned
    clean = finite_metrics(metrics)
    evaluation = rules.objective.evaluate(clean)
    state = TrialState.PRUNED if pruned else TrialState.COMPLETED
    events: list[tuple[str, str | None]] = []
    error = None if pruned else never_reported(rules.objective.metric, metrics)
    if error is not None:
        # A trial without its objective cannot count: it fails, saying what it did report.
        state, events = TrialState.FAILED, [("failed", error)]
    else:
        if not evaluation.feasible:
            events.append(("infeasible", "broke " + ", ".join(evaluation.broken)))
        if not pruned and evaluation.value is None:
            metric = rules.objective.metric
            events.append(("diverged", f"objective {metric} was not a finite number"))
        events.append((state, None))
    failed = state == TrialState.FAILED  # unranked, as a trial failed by its worker is
    return Ending(
        holder=c.holder,
        now=utcnow(),
        state=state,
        metrics=clean,
        value=evaluation.value,
        feasible=None if failed else evaluation.feasible,
        violation=None if failed else min(evaluation.violation, STORED_INFINITY),
        steps=[(step, finite_metrics(m)) for step, m in c.steps],
        events=events,
        error=error,
    )


def never_reported(objective: str, metrics: Mapping[str, float | None]) -> str | None:
    """Why a trial whose final ``metrics`` lack the ``objective`` fails, or None.

    A reported but non-finite objective (NaN, infinity: sent as null) is no failure: the
    trial diverged, a real outcome (see :func:`hpsearch.objective.diverged`)."""
    if objective in metrics:
        return None
    reported = ", ".join(sorted(metrics)) or "nothing"
    return f"objective {objective} was never reported; reported: {reported}"
