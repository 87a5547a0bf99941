"""Where a server runs the queue's store work: on the event loop for SQLite, on threads for
PostgreSQL (Settings.queue_threads), unless told otherwise."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.app import create_app
from hpsearch.settings import Settings
from hpsearch.store import upgrade


def _threads(settings: Settings) -> int | None:
    app = create_app(settings)

    async def started() -> int | None:
        async with app.router.lifespan_context(app):  # what uvicorn runs at startup
            limiter = app.state.queue_threads
            return None if limiter is None else int(limiter.total_tokens)

    # A thread of its own: a browser test earlier in the run may leave a loop in this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, started()).result()


def test_sqlite_runs_queue_work_on_the_event_loop_unless_given_threads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    assert _threads(Settings(database_url=url)) is None
    assert _threads(Settings(database_url=url, queue_threads=2)) == 2


@pytest.mark.postgres
def test_postgres_runs_queue_work_on_threads(postgres_url: str) -> None:
    assert _threads(Settings(database_url=postgres_url)) == 2
