"""Ending a trial with its final metrics: the queue's other hot path, with its claim.

A completion ends the trial (checking its lease), stores the steps it carries, records its
events, and moves the study's counters and best trial; the study row is locked before the
trial row, the store's one lock order (see :mod:`hpsearch.store.claims`).

On PostgreSQL all of it is one statement run outside a transaction block
(:func:`hpsearch.store.postgres.complete_at_once`): the study row is locked for that
statement alone, never across a round trip or a wait of the server's threads for their
turn, so completions of one study do not queue behind each other. Anywhere else, and
whenever that statement ends nothing (a lost lease, a resent completion, a best trial
completed since the statement began), :func:`complete` does the same in a transaction, step
by step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from hpsearch.errors import LeaseLost, NotFound
from hpsearch.objective import finite_metrics, rank_key
from hpsearch.states import ENDED, TrialState
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.lease import Holder, already_ended
from hpsearch.store.models import STORED_INFINITY, Trial
from hpsearch.store.queue import Steps, check_held, holder_params, store_steps
from hpsearch.store.rules import RulesFor, StudyRules
from hpsearch.store.studies import (
    Ranked,
    finish_if_done,
    get_study,
    get_trial,
    may_finish,
)


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
    state: str
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


# -- PostgreSQL: one statement ---------------------------------------------------------------


# -- any database: a transaction, step by step ---------------------------------------------


def complete(session: Session, c: Completion, rules_for: RulesFor) -> Trial:
    """Ends a trial with its final metrics, after storing the ``steps`` not yet reported.

    The study row is locked and read with the trial's number in one statement; the trial is
    ended (its lease checked) in a second; its steps, events and the study's counters are
    written in three more. The ORM is only asked when the study may be ending or the lease
    check fails (to say why, or to answer a resent completion).
    """
    trial_id = c.holder.trial_id
    connection = session.connection()
    study = connection.execute(sql.LOCK_STUDY_OF_TRIAL, {"b_trial_id": trial_id}).one_or_none()
    if study is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study_id, created, _, _, n_completed, n_pruned, n_failed, best_id, max_trials, number = study
    rules = rules_for(session, (study_id, created))
    e = ending(rules, c)
    row = _end_trial(session, e)
    if row is None:
        return _resent_or_refused(session, c.holder)
    if e.state == TrialState.PRUNED:
        n_pruned += 1
    elif e.state == TrialState.FAILED:
        n_failed += 1
    else:
        n_completed += 1
        if e.may_be_best:
            challenger = Ranked(number, e.value, True, 0.0)
            if _beats(session, challenger, best_id, rules):
                best_id = trial_id
                rules.best_ranks.put(trial_id, challenger)
    connection.execute(
        sql.SET_STUDY_COUNTERS,
        {
            "b_study_id": study_id,
            "b_n_completed": n_completed,
            "b_n_pruned": n_pruned,
            "b_n_failed": n_failed,
            "b_best_trial_id": best_id,
            "b_now": e.now,
        },
    )
    counters = (n_completed, n_pruned, n_failed)
    if may_finish(rules.spec.budget, max_trials, counters, best_id, created, e.now):
        finish_if_done(session, get_study(session, study_id, lock=True))
    return Trial(**row._mapping)


def _end_trial(session: Session, e: Ending) -> Row[Any] | None:
    """The trial ended (None if its lease check fails), then its steps and events stored."""
    connection = session.connection()
    row = connection.execute(
        sql.END_HELD_TRIAL,
        {
            **holder_params(e.holder),
            "b_now": e.now,
            "b_state": e.state,
            "b_metrics": e.metrics,
            "b_value": e.value,
            "b_feasible": e.feasible,
            "b_violation": e.violation,
            "b_step": e.last_step,
            "b_error": e.error,
        },
    ).one_or_none()
    if row is None:
        return None
    store_steps(session, e.holder, e.steps)
    connection.execute(
        sql.INSERT_EVENT,
        [
            {
                **holder_params(e.holder),
                "b_kind": kind,
                "b_detail": detail,
                "b_created_at": e.now,
            }
            for kind, detail in e.events
        ],
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


def _resent_or_refused(session: Session, holder: Holder) -> Trial:
    """A completion whose lease check failed: the same trial again if this worker already
    ended it (its first reply was lost), else LeaseLost saying why."""
    trial = get_trial(session, holder.trial_id, lock=True)
    if already_ended(trial, holder, ENDED):
        return trial
    check_held(trial, holder)  # raises, saying why
    raise LeaseLost(f"trial {holder.trial_id} is no longer leased to {holder.worker_id}")
