"""Ending a trial with its final metrics: the queue's other hot path, with its claim.

A completion ends the trial (checking its lease), stores the steps it carries, records its
events, and moves the study's counters and best trial; the study row is locked before the
trial row, the store's one lock order (see :mod:`hpsearch.store.claims`).

On PostgreSQL all of it is one statement run outside a transaction block
(:func:`complete_at_once`): the study row is locked for that statement alone, never across a
round trip or a wait of the server's threads for their turn, so completions of one study do
not queue behind each other. Anywhere else, and whenever that statement ends nothing (a lost
lease, a resent completion, a best trial completed since the statement began),
:func:`complete` does the same in a transaction, step by step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, DateTime, Integer, Row, bindparam
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from hpsearch.errors import LeaseLost, NotFound
from hpsearch.objective import Direction, finite_metrics, rank_key
from hpsearch.states import ENDED, TrialState
from hpsearch.store import lease
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.models import Trial
from hpsearch.store.queue import STORED_INFINITY, Steps, check_held, store_steps
from hpsearch.store.rules import RulesFor, StudyKey, StudyRules
from hpsearch.store.studies import (
    Ranked,
    finish_if_done,
    get_study,
    get_trial,
    may_finish,
)


@dataclass(frozen=True)
class Ending:
    """What ending a held trial writes: the trial, its steps and events, and how the study's
    counters move."""

    trial_id: int
    worker_id: str
    attempt: int
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


def ending(
    rules: StudyRules,
    trial_id: int,
    worker_id: str,
    attempt: int,
    metrics: Mapping[str, float | None],
    pruned: bool,
    steps: Steps,
) -> Ending:
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
        trial_id=trial_id,
        worker_id=worker_id,
        attempt=attempt,
        now=utcnow(),
        state=state,
        metrics=clean,
        value=evaluation.value,
        feasible=None if failed else evaluation.feasible,
        violation=None if failed else min(evaluation.violation, STORED_INFINITY),
        steps=[(step, finite_metrics(m)) for step, m in steps],
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


@cache
def _at_once(direction: Direction) -> Any:
    """The whole completion, for a study that ``direction``-s its objective.

    ``l`` locks the study row, and ``t`` asks for it before it updates (and so locks) the
    trial: the store's lock order within one statement. ``c`` moves the counters by the
    outcome and makes the trial the best one unless the best so far, ``b``, ranks at or
    above it (a best trial is always completed and feasible: by value, then by number).

    A statement that waited for the study lock re-reads that row but sees other rows as they
    were when it began: perhaps before the best so far, which the lock's previous holder may
    have just set, was completed (or even claimed). A completed trial's ranking never
    changes, so ``b`` is only trusted completed; otherwise nothing is ended, and
    :func:`complete` does it in a transaction, whose later statements see it.
    """
    better = ">" if direction == "maximize" else "<"
    trial_columns = [c.name for c in sql.TRIALS.c]
    study_columns = ["s_completed", "s_pruned", "s_failed", "s_best_trial_id", "s_max_trials"]
    selected = ", ".join(f"t.{name}" for name in trial_columns)
    return (
        sql_text(
            f"""
WITH l AS (
  SELECT id, best_trial_id FROM studies WHERE id = :study_id FOR UPDATE
), b AS (
  SELECT value, number, state FROM trials WHERE id = (SELECT best_trial_id FROM l)
), t AS (
  UPDATE trials SET state = :state, metrics = CAST(:metrics AS json), value = :value,
    feasible = :feasible, violation = :violation, finished_at = :now, lease_expires_at = NULL,
    error = :error,
    last_step = CASE WHEN COALESCE(last_step, 0) < :step THEN :step ELSE last_step END
  WHERE id = :trial_id AND worker_id = :worker_id AND attempt = :attempt
    AND state = 'running' AND lease_expires_at >= :now AND EXISTS (SELECT 1 FROM l)
    AND ((SELECT best_trial_id FROM l) IS NULL
      OR EXISTS (SELECT 1 FROM b WHERE state = 'completed'))
  RETURNING *
), s AS (
{sql.UPSERT_STEPS_OF_T_PG}), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT t.id, x.kind, :attempt, :worker_id, x.detail, :now
  FROM t, json_to_recordset(CAST(:events AS json)) AS x(kind text, detail text)
), c AS (
  UPDATE studies SET
    n_completed = n_completed + :completed,
    n_pruned = n_pruned + :pruned,
    n_failed = n_failed + :failed,
    best_trial_id = CASE
      WHEN :candidate AND NOT EXISTS (
        SELECT 1 FROM b WHERE b.value {better} :value OR (b.value = :value AND b.number < t.number)
      ) THEN t.id
      ELSE best_trial_id END,
    updated_at = :now
  FROM t WHERE studies.id = t.study_id
  RETURNING studies.n_completed, studies.n_pruned, studies.n_failed, studies.best_trial_id,
    studies.max_trials
)
SELECT {selected}, c.n_completed AS s_completed, c.n_pruned AS s_pruned,
  c.n_failed AS s_failed, c.best_trial_id AS s_best_trial_id, c.max_trials AS s_max_trials
FROM t, c
"""
        )
        .bindparams(
            bindparam("step", type_=Integer()),
            bindparam("now", type_=DateTime()),
        )
        .columns(*sql.result_columns(*trial_columns, *study_columns))
    )


@dataclass(frozen=True)
class Completed:
    trial: Trial
    # finish_if_done may end the study now: the caller runs it, in a transaction of its own.
    may_end_study: bool


def complete_at_once(
    connection: Connection,
    trial_id: int,
    worker_id: str,
    attempt: int,
    metrics: Mapping[str, float | None],
    rules_for: RulesFor,
    pruned: bool = False,
    steps: Steps = (),
    study_key: StudyKey | None = None,
) -> Completed | None:
    """Ends a held trial in one statement on a PostgreSQL connection in autocommit mode;
    None when it ends nothing (ask :func:`complete`, which says why, answers a resend, or
    ends the trial when the statement saw the study's best trial before it was completed;
    see :func:`_at_once`).
    ``study_key``: the trial's study and its creation time, if known (else one read)."""
    found = study_key or connection.execute(sql.STUDY_OF_TRIAL, {"b_trial_id": trial_id}).first()
    if found is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study_id, created = found
    rules = rules_for(connection, (study_id, created))
    e = ending(rules, trial_id, worker_id, attempt, metrics, pruned, steps)
    row = connection.execute(
        _at_once(rules.spec.objective.direction),
        {
            "study_id": study_id,
            "trial_id": trial_id,
            "worker_id": worker_id,
            "attempt": attempt,
            "now": e.now,
            "state": e.state,
            "metrics": json.dumps(e.metrics),
            "value": e.value,
            "feasible": e.feasible,
            "violation": e.violation,
            "step": e.last_step,
            "steps": json.dumps([{"step": k, "metrics": m} for k, m in dict(e.steps).items()]),
            "events": json.dumps([{"kind": k, "detail": d} for k, d in e.events]),
            "completed": int(e.state == TrialState.COMPLETED),
            "pruned": int(e.state == TrialState.PRUNED),
            "failed": int(e.state == TrialState.FAILED),
            "error": e.error,
            "candidate": e.may_be_best,
        },
    ).first()
    if row is None:
        return None
    columns = dict(row._mapping)
    counters = (columns.pop("s_completed"), columns.pop("s_pruned"), columns.pop("s_failed"))
    best_id, max_trials = columns.pop("s_best_trial_id"), columns.pop("s_max_trials")
    may_end = may_finish(rules.spec.budget, max_trials, counters, best_id, created, e.now)
    return Completed(Trial(**columns), may_end)


# -- any database: a transaction, step by step ---------------------------------------------


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

    The study row is locked and read with the trial's number in one statement; the trial is
    ended (its lease checked) in a second; its steps, events and the study's counters are
    written in three more. The ORM is only asked when the study may be ending or the lease
    check fails (to say why, or to answer a resent completion).
    """
    connection = session.connection()
    study = connection.execute(sql.LOCK_STUDY_OF_TRIAL, {"b_trial_id": trial_id}).one_or_none()
    if study is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study_id, created, _, _, n_completed, n_pruned, n_failed, best_id, max_trials, number = study
    rules = rules_for(session, (study_id, created))
    e = ending(rules, trial_id, worker_id, attempt, metrics, pruned, steps)
    row = _end_trial(session, e)
    if row is None:
        return _resent_or_refused(session, trial_id, worker_id, attempt)
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
                if len(rules.best_ranks) > 64:  # a long study has had many; none asked again
                    rules.best_ranks.clear()
                rules.best_ranks[trial_id] = challenger
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
            "b_error": e.error,
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
    if lease.already_ended(trial, lease.Holder(trial_id, worker_id, attempt), ENDED):
        return trial
    check_held(trial, worker_id, attempt)  # raises, saying why
    raise LeaseLost(f"trial {trial_id} is no longer leased to {worker_id}")
