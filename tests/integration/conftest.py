"""Fixtures of the integration tests that run a server on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.store.db import upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the code's schema: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("make_postgres_database")()
        return url
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    upgrade(url)
    return url
