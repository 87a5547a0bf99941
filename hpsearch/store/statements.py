"""The queue's hot-path SQL, built once.

Building a SQLAlchemy statement costs more than running it on a warm connection (an upsert's
``excluded`` columns alone take most of a millisecond), and reports, heartbeats and claims are
nearly all the requests a study makes. So their statements are module constants with bound
parameters, compiled once per dialect by SQLAlchemy's cache and run on the session's
connection (same transaction, no ORM unit of work). Bound parameters are named ``b_<name>``
(SQLAlchemy reserves column names for the values of an INSERT or UPDATE).
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ColumnClause,
    DateTime,
    Integer,
    Table,
    Text,
    bindparam,
    case,
    column,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite

from hpsearch.states import StudyState, TrialState
from hpsearch.store.models import Study, Trial, TrialEvent, Worker

TRIALS = cast(Table, Trial.__table__)
STUDIES = cast(Table, Study.__table__)
WORKERS = cast(Table, Worker.__table__)
EVENTS = cast(Table, TrialEvent.__table__)

_t = TRIALS.c


def result_columns(*names: str) -> list[ColumnClause[Any]]:
    """A textual statement's result columns, in the order it selects them. Declared (as
    ``text(...).columns(...)``), they let SQLAlchemy build the result's description once per
    statement rather than on every execution. Untyped: values come as the driver reads them."""
    return [column(name) for name in names]


# The trial, if its lease is still the holder's: worker, attempt, running, not expired.
# Parameters: trial_id, worker_id, attempt, now.
_HELD = (
    _t.id == bindparam("b_trial_id"),
    _t.worker_id == bindparam("b_worker_id"),
    _t.attempt == bindparam("b_attempt"),
    _t.state == TrialState.RUNNING,
    _t.lease_expires_at >= bindparam("b_now"),
)

# The holder's lease, checked and extended in one statement (which also locks the row).
# Parameters: those of _HELD, expires.
EXTEND_LEASE = (
    update(TRIALS)
    .where(*_HELD)
    .values(lease_expires_at=bindparam("b_expires"))
    .returning(_t.study_id, _t.stop_requested)
)
# The same, also moving ``last_step`` forward to ``step`` (a report). Parameters: + step.
EXTEND_LEASE_TO_STEP = EXTEND_LEASE.values(
    last_step=case(
        (func.coalesce(_t.last_step, 0) < bindparam("b_step"), bindparam("b_step")),
        else_=_t.last_step,
    )
)

# The steps (JSON text, one entry per step) of the trial a statement's CTE ``t`` returns,
# upserted: a clause of the one-statement report and completion on PostgreSQL.
UPSERT_STEPS_OF_T_PG = """\
  INSERT INTO trial_intermediates (trial_id, step, attempt, metrics, created_at)
  SELECT t.id, x.step, :attempt, x.metrics, :now
  FROM t, json_to_recordset(CAST(:steps AS json)) AS x(step integer, metrics json)
  ON CONFLICT (trial_id, step) DO UPDATE
  SET metrics = excluded.metrics, attempt = excluded.attempt
"""

# A report or a heartbeat on PostgreSQL, in one statement run outside a transaction block
# (as the completion and the claim are): the holder's lease checked and extended (with
# ``last_step`` moved to ``step``, when one is given), the steps upserted, and what the reply
# says of the study. No row: the worker does not hold the lease. Parameters: trial_id,
# worker_id, attempt, now, expires, step (or None), steps (JSON text, one entry per step).
REPORT_AT_ONCE_PG = (
    sql_text(
        f"""
WITH t AS (
  UPDATE trials SET lease_expires_at = :expires,
    last_step = CASE WHEN COALESCE(last_step, 0) < :step THEN :step ELSE last_step END
  WHERE id = :trial_id AND worker_id = :worker_id AND attempt = :attempt
    AND state = 'running' AND lease_expires_at >= :now
  RETURNING id, study_id, stop_requested
), s AS (
{UPSERT_STEPS_OF_T_PG})
SELECT t.stop_requested, studies.state, studies.spec -> 'pruner' AS pruner
FROM t JOIN studies ON studies.id = t.study_id
"""
    )
    .bindparams(
        bindparam("step", type_=Integer()),
        bindparam("now", type_=DateTime()),
        bindparam("expires", type_=DateTime()),
        bindparam("steps", type_=Text()),
    )
    .columns(*result_columns("stop_requested", "state", "pruner"))
)

# Parameters: study_id.
STUDY_STATE_AND_PRUNER = select(STUDIES.c.state, STUDIES.c.spec["pruner"]).where(
    STUDIES.c.id == bindparam("b_study_id")
)

# Trials whose lease ran out. Parameters: now.
EXPIRED = select(_t.study_id, _t.id).where(
    _t.state == TrialState.RUNNING, _t.lease_expires_at < bindparam("b_now")
)

# (id, created_at), oldest first. Parameters: study_id (None: every study).
RUNNING_STUDIES = (
    select(STUDIES.c.id, STUDIES.c.created_at)
    .order_by(STUDIES.c.id)
    .where(
        STUDIES.c.state == StudyState.RUNNING,
        (bindparam("b_study_id", type_=STUDIES.c.id.type).is_(None))
        | (STUDIES.c.id == bindparam("b_study_id", type_=STUDIES.c.id.type)),
    )
)

# The oldest queued trial of a study, leased in one statement, if the study still runs (the
# claim may go by running studies read a moment before: see Store._running). ``SKIP LOCKED``
# (PostgreSQL; SQLite has no row locks and serializes writers instead) means claimers never
# wait on each other here. Parameters: study_id, worker_id, now, expires.
_study_runs = (
    select(STUDIES.c.id)
    .where(STUDIES.c.id == bindparam("b_study_id"), STUDIES.c.state == StudyState.RUNNING)
    .exists()
)
_oldest_queued = (
    select(_t.id)
    .where(_t.study_id == bindparam("b_study_id"), _t.state == TrialState.QUEUED, _study_runs)
    .order_by(_t.number)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
CLAIM_QUEUED = (
    update(TRIALS)
    .where(_t.id == _oldest_queued)
    .values(
        state=TrialState.RUNNING,
        attempt=_t.attempt + 1,
        worker_id=bindparam("b_worker_id"),
        lease_expires_at=bindparam("b_expires"),
        started_at=func.coalesce(_t.started_at, bindparam("b_now")),
        stop_requested=False,
    )
    .returning(_t.id, _t.number, _t.attempt, _t.params, _t.last_step)
)


# CLAIM_QUEUED and the claim's event in one statement (PostgreSQL). Like CLAIM_QUEUED, it
# checks that the study still runs: a pause or stop committed since the claim read the
# running studies must hand out nothing. Parameters: study_id, worker_id, now, expires,
# detail.
CLAIM_QUEUED_WITH_EVENT_PG = (
    sql_text(
        """
WITH c AS (
  UPDATE trials SET state = 'running', attempt = attempt + 1, worker_id = :worker_id,
    lease_expires_at = :expires, started_at = COALESCE(started_at, :now), stop_requested = false
  WHERE id = (
    SELECT id FROM trials WHERE study_id = :study_id AND state = 'queued'
      AND EXISTS (SELECT 1 FROM studies WHERE id = :study_id AND state = 'running')
    ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED
  )
  RETURNING id, number, attempt, params, last_step
), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT id, 'claimed', attempt, :worker_id, :detail, :now FROM c
)
SELECT id, number, attempt, params, last_step FROM c
"""
    )
    .bindparams(
        bindparam("now", type_=DateTime()),
        bindparam("expires", type_=DateTime()),
        bindparam("detail", type_=Text()),
    )
    .columns(*result_columns("id", "number", "attempt", "params", "last_step"))
)

# A sampled trial, created already leased (attempt 1). Parameters: study_id, number, params,
# worker_id, now, expires.
INSERT_LEASED_TRIAL = (
    insert(TRIALS)
    .values(
        study_id=bindparam("b_study_id"),
        number=bindparam("b_number"),
        params=bindparam("b_params", type_=_t.params.type),
        state=TrialState.RUNNING,
        source="sampler",
        attempt=1,
        worker_id=bindparam("b_worker_id"),
        lease_expires_at=bindparam("b_expires"),
        stop_requested=False,
        metrics=bindparam("b_metrics", type_=_t.metrics.type, value={}),
        created_at=bindparam("b_now"),
        started_at=bindparam("b_now"),
    )
    .returning(_t.id)
)

# INSERT_LEASED_TRIAL, SET_NEXT_NUMBER and the claim's event in one statement (PostgreSQL).
# Parameters: study_id, number, params (JSON text), worker_id, now, expires, next_number,
# detail.
INSERT_LEASED_WITH_EVENT_PG = sql_text(
    """
WITH t AS (
  INSERT INTO trials (study_id, number, params, state, source, attempt, worker_id,
    lease_expires_at, stop_requested, metrics, created_at, started_at)
  VALUES (:study_id, :number, CAST(:params AS json), 'running', 'sampler', 1, :worker_id,
    :expires, false, CAST('{}' AS json), :now, :now)
  RETURNING id
), s AS (
  UPDATE studies SET next_number = :next_number WHERE id = :study_id
), e AS (
  INSERT INTO trial_events (trial_id, kind, attempt, worker_id, detail, created_at)
  SELECT id, 'claimed', 1, :worker_id, :detail, :now FROM t
)
SELECT id FROM t
"""
).bindparams(
    bindparam("now", type_=DateTime()),
    bindparam("expires", type_=DateTime()),
    bindparam("detail", type_=Text()),
)

# A trial sampled ahead of its claim (see claims.AHEAD), queued. Parameters: study_id,
# number, params, now.
INSERT_QUEUED_TRIAL = insert(TRIALS).values(
    study_id=bindparam("b_study_id"),
    number=bindparam("b_number"),
    params=bindparam("b_params", type_=_t.params.type),
    state=TrialState.QUEUED,
    source="sampler",
    attempt=0,
    stop_requested=False,
    metrics=bindparam("b_metrics", type_=_t.metrics.type, value={}),
    created_at=bindparam("b_now"),
)

# Parameters: trial_id, kind, attempt, worker_id, detail, created_at.
INSERT_EVENT = insert(EVENTS).values(
    trial_id=bindparam("b_trial_id"),
    kind=bindparam("b_kind"),
    attempt=bindparam("b_attempt"),
    worker_id=bindparam("b_worker_id"),
    detail=bindparam("b_detail"),
    created_at=bindparam("b_created_at"),
)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# Reported steps unpacked from one JSON array ``[{"step": n, "metrics": {...}}, ...]`` by the
# database, so that a batch of steps is one statement whatever its length (steps unique).
_STEPS_FROM_JSON = {
    "postgresql": "SELECT :trial_id, s.step, :attempt, s.metrics, :now "
    "FROM json_to_recordset(CAST(:steps AS json)) AS s(step integer, metrics json)",
    # SQLite's upsert needs the WHERE after a SELECT (its parser would take ON for a join).
    "sqlite": "SELECT :trial_id, json_extract(value, '$.step'), :attempt, "
    "json_extract(value, '$.metrics'), :now FROM json_each(:steps) WHERE true",
}


@cache
def upsert_steps(dialect: str) -> Any:
    """One row per (trial, step): a resent or re-run step replaces the earlier one.

    Parameters: trial_id, attempt, now, steps (JSON text).
    """
    return sql_text(
        "INSERT INTO trial_intermediates (trial_id, step, attempt, metrics, created_at) "
        + _STEPS_FROM_JSON[dialect]
        + " ON CONFLICT (trial_id, step) DO UPDATE"
        " SET metrics = excluded.metrics, attempt = excluded.attempt"
    ).bindparams(
        bindparam("trial_id", type_=Integer()),
        bindparam("attempt", type_=Integer()),
        bindparam("now", type_=DateTime()),
        bindparam("steps", type_=Text()),
    )


@cache
def upsert_worker(dialect: str) -> Any:
    """Registers a worker or refreshes it. Parameters: id, host, devices, labels, now."""
    w = WORKERS.c
    statement = _insert(dialect)(WORKERS).values(
        id=bindparam("b_id"),
        host=bindparam("b_host"),
        devices=bindparam("b_devices", type_=w.devices.type),
        labels=bindparam("b_labels", type_=w.labels.type),
        created_at=bindparam("b_now"),
        last_seen_at=bindparam("b_now"),
    )
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "host": statement.excluded.host,
            "devices": statement.excluded.devices,
            "labels": statement.excluded.labels,
            "last_seen_at": statement.excluded.last_seen_at,
        },
    )


_s = STUDIES.c
# What ending or sampling a trial needs of its study row, read with the row locked.
_STUDY_FOR_UPDATE = (
    _s.id,
    _s.created_at,
    _s.state,
    _s.next_number,
    _s.n_completed,
    _s.n_pruned,
    _s.n_failed,
    _s.best_trial_id,
    _s.max_trials,
)
# A study row, locked. Parameters: study_id.
LOCK_STUDY = select(*_STUDY_FOR_UPDATE).where(_s.id == bindparam("b_study_id")).with_for_update()
# A study's queued and running trial counts. Read by a statement of their own once the study
# row is locked: a PostgreSQL statement that waited for the lock re-reads the locked row but
# sees every other table as it was when the statement began, without the trials the lock's
# previous holder added or claimed. Parameters: study_id.
LIVE_COUNTS = select(
    select(func.count())
    .where(_t.study_id == bindparam("b_study_id"), _t.state == TrialState.QUEUED)
    .scalar_subquery(),
    select(func.count())
    .where(_t.study_id == bindparam("b_study_id"), _t.state == TrialState.RUNNING)
    .scalar_subquery(),
)
# The study of a trial, locked (the store's lock order puts a study before its trials), and
# the trial's number. Parameters: trial_id.
LOCK_STUDY_OF_TRIAL = (
    select(
        *_STUDY_FOR_UPDATE,
        select(_t.number).where(_t.id == bindparam("b_trial_id")).scalar_subquery(),
    )
    .where(_s.id == select(_t.study_id).where(_t.id == bindparam("b_trial_id")).scalar_subquery())
    .with_for_update(of=STUDIES)
)

# The study of a trial and its creation time (the key of its cached rules), unlocked: a
# trial's study never changes. Parameters: trial_id.
STUDY_OF_TRIAL = select(_s.id, _s.created_at).where(
    _s.id == select(_t.study_id).where(_t.id == bindparam("b_trial_id")).scalar_subquery()
)

# A held trial ended with its final metrics, in one statement that also checks the lease
# (as EXTEND_LEASE does). Parameters: trial_id, worker_id, attempt, now, state, metrics,
# value, feasible, violation, step (the last step sent with it, or None).
END_HELD_TRIAL = (
    update(TRIALS)
    .where(*_HELD)
    .values(
        state=bindparam("b_state"),
        metrics=bindparam("b_metrics", type_=_t.metrics.type),
        value=bindparam("b_value"),
        feasible=bindparam("b_feasible"),
        violation=bindparam("b_violation"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_now"),
        lease_expires_at=None,
        # The last steps may come with the completion; b_step is NULL when none did.
        last_step=case(
            (func.coalesce(_t.last_step, 0) < bindparam("b_step"), bindparam("b_step")),
            else_=_t.last_step,
        ),
    )
    .returning(*TRIALS.c)
)

# The ranking columns of one trial. Parameters: trial_id.
RANK_OF_TRIAL = select(_t.number, _t.value, _t.feasible, _t.violation).where(
    _t.id == bindparam("b_trial_id")
)

# A study's counters after a trial ended. Parameters: study_id, n_completed, n_pruned,
# n_failed, best_trial_id, now.
SET_STUDY_COUNTERS = (
    update(STUDIES)
    .where(_s.id == bindparam("b_study_id"))
    .values(
        n_completed=bindparam("b_n_completed"),
        n_pruned=bindparam("b_n_pruned"),
        n_failed=bindparam("b_n_failed"),
        best_trial_id=bindparam("b_best_trial_id"),
        updated_at=bindparam("b_now"),
    )
)

# Parameters: study_id, next_number.
SET_NEXT_NUMBER = (
    update(STUDIES)
    .where(_s.id == bindparam("b_study_id"))
    .values(next_number=bindparam("b_next_number"))
)
