"""PostgreSQL's fast path: the queue's hot requests, each one statement outside a
transaction block.

This module is the one seam between the store's general logic and PostgreSQL-only SQL. A
report, a completion and the common claim run here as single statements on a connection in
autocommit mode, so row locks are held for one statement and never across a round trip. Each
path answers ``None`` whenever it did not act (a lost lease, a resent completion, nothing
queued): the caller then takes the general path, a transaction that works on every database
and says why. SQLite always takes the general path (:class:`FastPath` is only built for
PostgreSQL); inside the general claim, :func:`claim_queued` and :func:`insert_leased` do in
one statement what takes two or three elsewhere.

Bound parameters are named ``b_<name>``, as in :mod:`hpsearch.store.statements`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, DateTime, Integer, Row, Text, bindparam
from sqlalchemy import text as sql_text

from hpsearch.errors import NotFound
from hpsearch.objective import Direction, finite_metrics
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.ending import Completion, counted, ending
from hpsearch.store.lease import Holder, Steps
from hpsearch.store.models import Trial
from hpsearch.store.queue import ReportAck, holder_params, judged_by, steps_json, stop_reason
from hpsearch.store.rules import RulesFor, StudyKey
from hpsearch.store.statements import result_columns
from hpsearch.store.studies import may_finish


def serves(connection: Connection) -> bool:
    """Whether ``connection`` is PostgreSQL's, whose one-statement paths this module runs."""
    return connection.dialect.name == "postgresql"


class FastPath:
    """The one-statement requests of one store on PostgreSQL (a SQLite store has none)."""

    def __init__(self, db: Database, lease: timedelta, rules_for: RulesFor) -> None:
        self.db = db
        self.lease = lease
        self.rules_for = rules_for

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in autocommit mode: each statement its own transaction."""
        with self.db.autocommit() as connection:
            yield connection

    def report(self, holder: Holder, steps: Steps) -> tuple[ReportAck, Steps] | None:
        """See :func:`report_at_once`."""
        with self.db.autocommit() as connection:
            return report_at_once(connection, holder, steps, self.lease)

    def complete(self, c: Completion, study_key: StudyKey | None) -> Completed | None:
        """See :func:`complete_at_once`."""
        with self.db.autocommit() as connection:
            return complete_at_once(connection, c, self.rules_for, study_key)


def claim_queued(connection: Connection, params: dict[str, Any]) -> Row[Any] | None:
    """The oldest queued trial of a study leased and its ``claimed`` event recorded, in one
    statement (see ``CLAIM_QUEUED_WITH_EVENT``): its id, number, attempt, params and last
    step, or None."""
    return connection.execute(CLAIM_QUEUED_WITH_EVENT, params).first()


def insert_leased(connection: Connection, params: dict[str, Any]) -> int:
    """A sampled trial inserted leased, the study's next number set and the ``claimed`` event
    recorded, in one statement (see ``INSERT_LEASED_WITH_EVENT``); the trial's id."""
    trial_id: int = connection.scalar(
        INSERT_LEASED_WITH_EVENT, {**params, "b_params": json.dumps(params["b_params"])}
    )
    return trial_id


# The steps (JSON text, one entry per step) of the trial a statement's CTE ``t`` returns,
# upserted: a clause of the one-statement report and completion on PostgreSQL.
_UPSERT_STEPS_OF_T = """\
  INSERT INTO trial_intermediates (trial_id, step, attempt, metrics, created_at)
  SELECT t.id, x.step, :b_attempt, x.metrics, :b_now
  FROM t, json_to_recordset(CAST(:b_steps AS json)) AS x(step integer, metrics json)
  ON CONFLICT (trial_id, step) DO UPDATE
  SET metrics = excluded.metrics, attempt = excluded.attempt
"""


# A report or a heartbeat on PostgreSQL, in one statement run outside a transaction block
# (as the completion and the claim are): the holder's lease checked and extended (with
# ``last_step`` moved to ``step``, when one is given), the steps upserted, and what the reply
# says of the study. No row: the worker does not hold the lease. Parameters: trial_id,
# worker_id, attempt, now, expires, step (or None), steps (JSON text, one entry per step).
REPORT = (
    sql_text(
        f"""
WITH t AS (
  UPDATE trials SET lease_expires_at = :b_expires,
    last_step = CASE WHEN COALESCE(last_step, 0) < :b_step THEN :b_step ELSE last_step END
  WHERE id = :b_trial_id AND worker_id = :b_worker_id AND attempt = :b_attempt
    AND state = 'running' AND lease_expires_at >= :b_now
  RETURNING id, study_id, stop_requested
), s AS (
{_UPSERT_STEPS_OF_T})
SELECT t.stop_requested, studies.state, studies.spec -> 'pruner' AS pruner,
  studies.spec -> 'scheduler' AS scheduler
FROM t JOIN studies ON studies.id = t.study_id
"""
    )
    .bindparams(
        bindparam("b_step", type_=Integer()),
        bindparam("b_now", type_=DateTime()),
        bindparam("b_expires", type_=DateTime()),
        bindparam("b_steps", type_=Text()),
    )
    .columns(*result_columns("stop_requested", "state", "pruner", "scheduler"))
)


# CLAIM_QUEUED and the claim's event in one statement (PostgreSQL). Like CLAIM_QUEUED, it
# checks that the study still runs: a pause or stop committed since the claim read the
# running studies must hand out nothing. Parameters: study_id, worker_id, now, expires,
# detail.
CLAIM_QUEUED_WITH_EVENT = (
    sql_text(
        """
WITH c AS (
  UPDATE trials SET state = 'running', attempt = attempt + 1, worker_id = :b_worker_id,
    lease_expires_at = :b_expires, started_at = COALESCE(started_at, :b_now), stop_requested = false
  WHERE id = (
    SELECT id FROM trials WHERE study_id = :b_study_id AND state = 'queued'
      AND EXISTS (SELECT 1 FROM studies WHERE id = :b_study_id AND state = 'running')
    ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED
  )
  RETURNING id, number, attempt, params, last_step, schedule
), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT id, 'claimed', attempt, :b_worker_id, :b_detail, :b_now FROM c
)
SELECT id, number, attempt, params, last_step, schedule FROM c
"""
    )
    .bindparams(
        bindparam("b_now", type_=DateTime()),
        bindparam("b_expires", type_=DateTime()),
        bindparam("b_detail", type_=Text()),
    )
    .columns(*result_columns("id", "number", "attempt", "params", "last_step", "schedule"))
)


# INSERT_LEASED_TRIAL, SET_NEXT_NUMBER and the claim's event in one statement (PostgreSQL).
# Parameters: study_id, number, params (JSON text), worker_id, now, expires, next_number,
# detail.
INSERT_LEASED_WITH_EVENT = sql_text(
    """
WITH t AS (
  INSERT INTO trials (study_id, number, params, state, source, attempt, worker_id,
    lease_expires_at, stop_requested, metrics, created_at, started_at)
  VALUES (:b_study_id, :b_number, CAST(:b_params AS json), 'running', 'sampler', 1, :b_worker_id,
    :b_expires, false, CAST('{}' AS json), :b_now, :b_now)
  RETURNING id
), s AS (
  UPDATE studies SET next_number = :b_next_number WHERE id = :b_study_id
), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT id, 'claimed', 1, :b_worker_id, :b_detail, :b_now FROM t
)
SELECT id FROM t
"""
).bindparams(
    bindparam("b_now", type_=DateTime()),
    bindparam("b_expires", type_=DateTime()),
    bindparam("b_detail", type_=Text()),
)


@cache
def _complete(direction: Direction) -> Any:
    """The whole completion, for a study that ``direction``-s its objective.

    ``l`` locks the study row, and ``t`` asks for it before it updates (and so locks) the
    trial: the store's lock order within one statement. ``c`` moves the counters by the
    outcome and makes the trial the best one unless the best so far, ``b``, ranks at or
    above it (a best trial is always completed and feasible: by value, then by number).

    A statement that waited for the study lock re-reads that row but sees other rows as they
    were when it began: perhaps before the best so far, which the lock's previous holder may
    have just set, was completed (or even claimed). A completed trial's ranking never
    changes, so ``b`` is only trusted completed; otherwise nothing is ended, and
    :func:`completion.complete` does it in a transaction, whose later statements see it.
    """
    better = ">" if direction == "maximize" else "<"
    trial_columns = [c.name for c in sql.TRIALS.c]
    study_columns = ["s_completed", "s_pruned", "s_failed", "s_best_trial_id", "s_max_trials"]
    selected = ", ".join(f"t.{name}" for name in trial_columns)
    return (
        sql_text(
            f"""
WITH l AS (
  SELECT id, best_trial_id FROM studies WHERE id = :b_study_id FOR UPDATE
), b AS (
  SELECT value, number, state FROM trials WHERE id = (SELECT best_trial_id FROM l)
), t AS (
  UPDATE trials SET state = :b_state, metrics = CAST(:b_metrics AS json), value = :b_value,
    feasible = :b_feasible, violation = :b_violation, finished_at = :b_now, lease_expires_at = NULL,
    error = :b_error,
    last_step = CASE WHEN COALESCE(last_step, 0) < :b_step THEN :b_step ELSE last_step END
  WHERE id = :b_trial_id AND worker_id = :b_worker_id AND attempt = :b_attempt
    AND state = 'running' AND lease_expires_at >= :b_now AND EXISTS (SELECT 1 FROM l)
    AND ((SELECT best_trial_id FROM l) IS NULL
      OR EXISTS (SELECT 1 FROM b WHERE state = 'completed'))
  RETURNING *
), s AS (
{_UPSERT_STEPS_OF_T}), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT t.id, x.kind, :b_attempt, :b_worker_id, x.detail, :b_now
  FROM t, json_to_recordset(CAST(:b_events AS json)) AS x(kind text, detail text)
), c AS (
  UPDATE studies SET
    n_completed = n_completed + :b_completed,
    n_pruned = n_pruned + :b_pruned,
    n_failed = n_failed + :b_failed,
    best_trial_id = CASE
      WHEN :b_candidate AND NOT EXISTS (
        SELECT 1 FROM b
        WHERE b.value {better} :b_value OR (b.value = :b_value AND b.number < t.number)
      ) THEN t.id
      ELSE best_trial_id END,
    updated_at = :b_now
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
            bindparam("b_step", type_=Integer()),
            bindparam("b_now", type_=DateTime()),
        )
        .columns(*result_columns(*trial_columns, *study_columns))
    )


@dataclass(frozen=True)
class Completed:
    trial: Trial
    # finish_if_done may end the study now: the caller runs it, in a transaction of its own.
    may_end_study: bool


def complete_at_once(
    connection: Connection, c: Completion, rules_for: RulesFor, study_key: StudyKey | None = None
) -> Completed | None:
    """Ends a held trial in one statement on a PostgreSQL connection in autocommit mode;
    None when it ends nothing (ask :func:`completion.complete`, which says why, answers a
    resend, or ends the trial when the statement saw the study's best trial before it was
    completed; see :func:`_complete`). ``study_key``: the trial's study and its creation
    time, if known (else one read)."""
    trial_id = c.holder.trial_id
    found = study_key or connection.execute(sql.STUDY_OF_TRIAL, {"b_trial_id": trial_id}).first()
    if found is None:
        raise NotFound(f"trial {trial_id} does not exist")
    study_id, created = found
    rules = rules_for(connection, (study_id, created))
    e = ending(rules, c)
    completed, pruned, failed = counted(e.state, (0, 0, 0))  # how the counters move
    row = connection.execute(
        _complete(rules.spec.objective.direction),
        {
            **holder_params(c.holder),
            "b_study_id": study_id,
            "b_now": e.now,
            "b_state": e.state,
            "b_metrics": json.dumps(e.metrics),
            "b_value": e.value,
            "b_feasible": e.feasible,
            "b_violation": e.violation,
            "b_step": e.last_step,
            "b_steps": steps_json(e.steps),
            "b_events": json.dumps([{"kind": k, "detail": d} for k, d in e.events]),
            "b_completed": completed,
            "b_pruned": pruned,
            "b_failed": failed,
            "b_error": e.error,
            "b_candidate": e.may_be_best,
        },
    ).first()
    if row is None:
        return None
    columns = dict(row._mapping)
    counters = (columns.pop("s_completed"), columns.pop("s_pruned"), columns.pop("s_failed"))
    best_id, max_trials = columns.pop("s_best_trial_id"), columns.pop("s_max_trials")
    may_end = may_finish(rules.spec.budget, max_trials, counters, best_id, created, e.now)
    return Completed(Trial(**columns), may_end)


def report_at_once(
    connection: Connection, holder: Holder, steps: Steps, lease: timedelta
) -> tuple[ReportAck, Steps] | None:
    """A report (or, with no ``steps``, a heartbeat) in one statement on a PostgreSQL
    connection in autocommit mode: the lease checked and extended, the steps stored, the
    study's state read. ``None`` when the worker does not hold the lease
    (:func:`queue.report`, in a transaction, then says why). With the reply, the steps (as
    stored) that the study's pruner must still judge (:func:`queue.judge`; none when it has
    none): stored already, whatever it decides."""
    now = utcnow()
    expires = now + lease
    cleaned = [(step, finite_metrics(metrics)) for step, metrics in steps]
    row = connection.execute(
        REPORT,
        {
            **holder_params(holder),
            "b_now": now,
            "b_expires": expires,
            "b_step": max((step for step, _ in cleaned), default=None),
            "b_steps": steps_json(cleaned),
        },
    ).first()
    if row is None:
        return None
    stop_requested, state, pruner, scheduler = row
    reason = stop_reason(state, bool(stop_requested))
    ack = ReportAck(reason is not None, reason, expires)
    return ack, cleaned if reason is None and judged_by(pruner, scheduler) else []
