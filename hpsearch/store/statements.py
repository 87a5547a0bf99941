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

# Parameters: study_id.
STUDY_STATE_AND_PRUNER = select(
    STUDIES.c.state, STUDIES.c.spec["pruner"], STUDIES.c.spec["scheduler"]
).where(STUDIES.c.id == bindparam("b_study_id"))

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
    .returning(_t.id, _t.number, _t.attempt, _t.params, _t.last_step, _t.schedule)
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
    "postgresql": "SELECT :b_trial_id, s.step, :b_attempt, s.metrics, :b_now "
    "FROM json_to_recordset(CAST(:b_steps AS json)) AS s(step integer, metrics json)",
    # SQLite's upsert needs the WHERE after a SELECT (its parser would take ON for a join).
    "sqlite": "SELECT :b_trial_id, json_extract(value, '$.step'), :b_attempt, "
    "json_extract(value, '$.metrics'), :b_now FROM json_each(:b_steps) WHERE true",
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
        bindparam("b_trial_id", type_=Integer()),
        bindparam("b_attempt", type_=Integer()),
        bindparam("b_now", type_=DateTime()),
        bindparam("b_steps", type_=Text()),
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
            "exited_at": None,  # back under the same id: it works again
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
