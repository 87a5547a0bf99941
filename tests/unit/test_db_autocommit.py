"""``Database.autocommit``: its connections are kept between uses, one per user at once, up to
a few; one that fails goes back to the engine's pool, and a lost one takes the others kept
beside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from hpsearch.store import Database
from hpsearch.store.db import KEEP_AUTOCOMMIT

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    db = Database(postgres_url)
    yield db
    db.dispose()


def _backend(db: Database) -> int:
    with db.autocommit() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return pid


def test_a_connection_is_kept_between_uses_and_each_user_at_once_has_its_own(
    db: Database,
) -> None:
    first = _backend(db)
    assert db.engine.pool.checkedout() == 1  # kept, not given back to the pool
    assert _backend(db) == first
    with db.autocommit() as a, db.autocommit() as b:
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b)}
        # Each statement commits on its own: another connection sees the write at once.
        a.execute(text("CREATE TABLE seen (x int)"))
        b.execute(text("INSERT INTO seen VALUES (1)"))
        assert a.execute(text("SELECT count(*) FROM seen")).scalar_one() == 1
    assert len(pids) == 2 and first in pids
    assert {_backend(db), _backend(db)} <= pids  # both kept, neither opened anew


def test_no_more_are_kept_than_leave_the_pool_enough_for_sessions(db: Database) -> None:
    with ExitStack() as stack:
        for _ in range(KEEP_AUTOCOMMIT + 3):
            stack.enter_context(db.autocommit())
        assert db.engine.pool.checkedout() == KEEP_AUTOCOMMIT + 3
    assert db.engine.pool.checkedout() == KEEP_AUTOCOMMIT


def test_a_connection_whose_statement_failed_goes_back_to_the_pool(db: Database) -> None:
    _backend(db)
    assert db.engine.pool.checkedout() == 1  # kept
    with pytest.raises(ProgrammingError), db.autocommit() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    # Not kept in whatever state the failure left it: the pool's check-in reset it.
    assert db.engine.pool.checkedout() == 0
    with db.autocommit() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_a_lost_connection_is_replaced_and_the_others_kept_are_closed(
    db: Database, postgres_url: str
) -> None:
    with db.autocommit() as a, db.autocommit() as b:
        next_up, other = (c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b))
    # The database ends the connection the next use will take (the last one given back).
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (next_up,))
    # That use fails as it would were the database restarting (the server answers 503,
    # and the worker retries) ...
    with pytest.raises(OperationalError), db.autocommit() as conn:
        conn.execute(text("SELECT 1"))
    # ... and closes the other kept one, likely lost alike: no later use meets either.
    assert db.engine.pool.checkedout() == 0
    assert _backend(db) not in (next_up, other)
