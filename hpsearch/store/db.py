"""Engines, transactions and the schema's migration state.

The one place that owns transactions. On SQLite a write transaction starts with
``BEGIN IMMEDIATE``, so two claimers never both read "trial 7 is queued" and then both write:
the second waits for the first (``busy_timeout``) instead of failing or double-claiming.
On PostgreSQL, row locks (``FOR UPDATE SKIP LOCKED``) do that job in the claim itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from hpsearch.errors import NotFound

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
POOL_SIZE = 10
# autocommit()'s connections kept out of the pool at most: the queue's threads
# (Settings.queue_threads, 2 by default) and some to spare, while sessions keep the rest.
KEEP_AUTOCOMMIT = POOL_SIZE // 2


class SchemaOutOfDate(RuntimeError):
    """The database schema is behind the code (or ahead of it)."""


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_size=POOL_SIZE, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of pysqlite doing it lazily.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """An engine plus the two kinds of transaction the store uses."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo)
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._writes = sessionmaker(writer, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process queue here and are woken
        # as soon as the writer commits; left to SQLite's busy handler they would sleep and
        # retry (1, 2, 5 … 100 ms), which collapses throughput under many concurrent claims.
        # Other processes on the same file still meet at ``busy_timeout``.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        # The session of this thread's one_transaction(), while one is open.
        self._joined = threading.local()
        # autocommit()'s connections between uses. A list's append and pop are atomic.
        self._idle_autocommit: list[Connection] = []

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _joined_session(self) -> Session | None:
        session: Session | None = getattr(self._joined, "session", None)
        return session

    @contextmanager
    def read(self) -> Iterator[Session]:
        joined = self._joined_session()
        if joined is not None:
            yield joined
            return
        with self._reads() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that will write: committed on success, rolled back on error."""
        joined = self._joined_session()
        if joined is not None:
            yield joined
            return
        with self._write_lock, self._writes() as session, session.begin():
            yield session

    @contextmanager
    def one_transaction(self) -> Iterator[None]:
        """Every read and write this thread opens inside joins one write transaction,
        committed at the end (rolled back, all of it, on error): one BEGIN, one commit."""
        if self._joined_session() is not None:
            yield
            return
        with self.write() as session:
            self._joined.session = session
            try:
                yield
            finally:
                self._joined.session = None

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement is its own transaction: for a write that is
        one statement, which then holds its row locks for no round trip longer.

        Kept between uses rather than returned to the engine's pool: the pool's check-out
        and check-in, with the isolation level set and reset, cost about a tenth of a batched
        trial's server CPU (``bench/queue_cpu.py``). Up to ``KEEP_AUTOCOMMIT`` are kept; more
        in use at once go back to the pool. One that fails goes back too, not kept in whatever
        state it was left; one whose connection was lost closes those kept, likely lost alike."""
        try:
            conn = self._idle_autocommit.pop()
        except IndexError:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
        except BaseException:
            lost = conn.invalidated
            conn.close()
            if lost:
                self._close_idle_autocommit()
            raise
        if len(self._idle_autocommit) < KEEP_AUTOCOMMIT:
            self._idle_autocommit.append(conn)
        else:
            conn.close()

    def _close_idle_autocommit(self) -> None:
        while self._idle_autocommit:
            try:
                self._idle_autocommit.pop().close()
            except IndexError:  # another thread took the last one
                break

    def dispose(self) -> None:
        self._close_idle_autocommit()
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Brings the schema to ``revision`` (the command behind ``hpsearch db upgrade``)."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(db: Database) -> None:
    """Refuses to serve a database whose schema is not at the code's head revision."""
    current = current_revision(db.engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing (empty database)'}, the code needs "
            f"{head}. Run: hpsearch db upgrade --database-url '{_redacted(db.url)}'"
        )


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def initialize_if_empty(db: Database) -> bool:
    """Creates the schema (by the migrations) in a database that holds nothing yet.

    A database with tables but an older revision is left alone: :func:`check_schema` then
    refuses it and says which command upgrades it, so no migration runs unannounced.
    """
    from sqlalchemy import inspect

    if current_revision(db.engine) is not None or inspect(db.engine).get_table_names():
        return False
    upgrade(db.url)
    return True


RowT = TypeVar("RowT")


def one_row(session: Session, query: Select[RowT], lock: bool, missing: str) -> RowT:
    """The first row ``query`` selects (locked, with ``lock``); NotFound(``missing``) if none."""
    if lock:
        # A locked read must see the committed row, not a copy the session loaded earlier
        # in this transaction (a stale counter written back would lose an update).
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(missing)
    return row
