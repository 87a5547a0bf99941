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

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hpsearch.store.models import Study, Trial, TrialEvent, TrialIntermediate, Worker

TRIALS = cast(Table, Trial.__table__)
STUDIES = cast(Table, Study.__table__)
INTERMEDIATES = cast(Table, TrialIntermediate.__table__)
WORKERS = cast(Table, Worker.__table__)
EVENTS = cast(Table, TrialEvent.__table__)

_t = TRIALS.c

# The holder's lease, checked and extended in one statement (which also locks the row).
# Parameters: trial_id, worker_id, attempt, now, expires.
EXTEND_LEASE = (
    update(TRIALS)
    .where(
        _t.id == bindparam("b_trial_id"),
        _t.worker_id == bindparam("b_worker_id"),
        _t.attempt == bindparam("b_attempt"),
        _t.state == "running",
        _t.lease_expires_at >= bindparam("b_now"),
    )
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
STUDY_STATE_AND_PRUNER = select(STUDIES.c.state, STUDIES.c.spec["pruner"]).where(
    STUDIES.c.id == bindparam("b_study_id")
)

# Trials whose lease ran out. Parameters: now.
EXPIRED = select(_t.study_id, _t.id).where(
    _t.state == "running", _t.lease_expires_at < bindparam("b_now")
)

# (id, created_at, time limit in seconds or None). Parameters: study_id (None: every study).
RUNNING_STUDIES = select(
    STUDIES.c.id,
    STUDIES.c.created_at,
    STUDIES.c.spec[("budget", "time_limit_s")].as_float(),
).where(
    STUDIES.c.state == "running",
    (bindparam("b_study_id", type_=STUDIES.c.id.type).is_(None))
    | (STUDIES.c.id == bindparam("b_study_id", type_=STUDIES.c.id.type)),
)

# The oldest queued trial of a study, leased in one statement. ``SKIP LOCKED`` (PostgreSQL;
# SQLite has no row locks and serializes writers instead) means claimers never wait on each
# other here. Parameters: study_id, worker_id, now, expires.
_oldest_queued = (
    select(_t.id)
    .where(_t.study_id == bindparam("b_study_id"), _t.state == "queued")
    .order_by(_t.number)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
CLAIM_QUEUED = (
    update(TRIALS)
    .where(_t.id == _oldest_queued)
    .values(
        state="running",
        attempt=_t.attempt + 1,
        worker_id=bindparam("b_worker_id"),
        lease_expires_at=bindparam("b_expires"),
        started_at=func.coalesce(_t.started_at, bindparam("b_now")),
        stop_requested=False,
    )
    .returning(_t.id, _t.number, _t.attempt, _t.params, _t.last_step)
)


# Parameters: study_id.
STUDY_TASK = select(STUDIES.c.spec["task"]).where(STUDIES.c.id == bindparam("b_study_id"))

# A sampled trial, created already leased (attempt 1). Parameters: study_id, number, params,
# worker_id, now, expires.
INSERT_LEASED_TRIAL = (
    insert(TRIALS)
    .values(
        study_id=bindparam("b_study_id"),
        number=bindparam("b_number"),
        params=bindparam("b_params", type_=_t.params.type),
        state="running",
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


@cache
def upsert_intermediate(dialect: str) -> Any:
    """One row per (trial, step): a resent or re-run step replaces the earlier one.

    Parameters: trial_id, step, attempt, metrics, created_at.
    """
    statement = _insert(dialect)(INTERMEDIATES).values(
        trial_id=bindparam("b_trial_id"),
        step=bindparam("b_step"),
        attempt=bindparam("b_attempt"),
        metrics=bindparam("b_metrics", type_=INTERMEDIATES.c.metrics.type),
        created_at=bindparam("b_created_at"),
    )
    return statement.on_conflict_do_update(
        index_elements=["trial_id", "step"],
        set_={"metrics": statement.excluded.metrics, "attempt": statement.excluded.attempt},
    )


@cache
def upsert_worker(dialect: str) -> Any:
    """Registers a worker or refreshes it. Parameters: id, host, devices, now."""
    w = WORKERS.c
    statement = _insert(dialect)(WORKERS).values(
        id=bindparam("b_id"),
        host=bindparam("b_host"),
        devices=bindparam("b_devices", type_=w.devices.type),
        created_at=bindparam("b_now"),
        last_seen_at=bindparam("b_now"),
    )
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "host": statement.excluded.host,
            "devices": statement.excluded.devices,
            "last_seen_at": statement.excluded.last_seen_at,
        },
    )
