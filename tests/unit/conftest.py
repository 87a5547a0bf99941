"""Fixtures of the unit tests that run the store on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from hpsearch.store import Database, Store, upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: a SQLite file, or a fresh database in the test PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store on :func:`database_url`, as a server's (leases of a minute)."""
    store = Store(Database(database_url), lease_seconds=60)
    yield store
    store.db.dispose()


@contextmanager
def statements_run(store: Store) -> Iterator[list[str]]:
    """The SQL statements run on the store's database inside the block."""
    statements: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.db.engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(store.db.engine, "before_cursor_execute", listener)
