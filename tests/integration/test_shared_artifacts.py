"""The ``database`` artifact backend: two server processes (two hosts, as far as they know:
each has an artifact folder of its own) on one PostgreSQL share checkpoints and logs."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import func, select

from hpsearch.store import Database
from hpsearch.store.artifacts import CHUNK
from hpsearch.store.models import ArtifactBlob, ArtifactChunk
from tests.conftest import ServerProcess, digits_spec
from tests.http_worker import WorkerOverHttp


@pytest.mark.postgres
def test_checkpoints_and_logs_written_through_one_server_are_read_through_another(
    make_server: Callable[..., ServerProcess], postgres_url: str
) -> None:
    a = make_server(postgres_url, HPSEARCH_ARTIFACT_BACKEND="database")
    b = make_server(postgres_url, HPSEARCH_ARTIFACT_BACKEND="database")
    spec = digits_spec(budget={"max_trials": 2, "parallelism": 1})
    r = httpx.post(f"{a.url}/api/v1/studies", json=spec, timeout=10)
    assert r.status_code == 201, r.text
    worker = WorkerOverHttp(a, "shared-worker")
    trial = worker.claim(r.json()["id"])
    tid = trial["id"]

    # Bigger than a chunk row, and not a multiple of one: three rows, the last one short.
    checkpoint = os.urandom(2 * CHUNK + 12345)
    for step in (1, 2, 3):
        info = worker.upload_checkpoint(trial, step, checkpoint[:-step])
        assert info["step"] == step
    got = httpx.get(f"{b.url}/api/v1/trials/{tid}/checkpoint", timeout=30)
    assert got.status_code == 200, got.text
    assert got.content == checkpoint[:-3]
    assert got.headers["x-checkpoint-step"] == "3"
    assert got.headers["content-length"] == str(len(checkpoint) - 3)

    lease = {"worker_id": worker.worker_id, "attempt": trial["attempt"]}
    for offset, text in ((0, "epoch 1: loss 0.9\n"), (18, "epoch 2: loss 0.5\n")):
        worker.post(f"/trials/{tid}/logs", {**lease, "offset": offset, "text": text})
    log = httpx.get(f"{b.url}/api/v1/trials/{tid}/logs", timeout=10).json()
    assert log["text"] == "epoch 1: loss 0.9\nepoch 2: loss 0.5\n"
    assert log["attempts"] == [1] and log["next_offset"] == 36

    # A fork made through one server starts from the checkpoint the other serves.
    fork = httpx.post(f"{b.url}/api/v1/trials/{tid}/fork", json={"params": {"lr": 0.01}})
    assert fork.status_code == 201, fork.text
    forked = httpx.get(f"{a.url}/api/v1/trials/{fork.json()['id']}/checkpoint", timeout=30)
    assert forked.content == checkpoint[:-3]

    # Only the newest two checkpoints are kept (the fork shares the newest's bytes).
    db = Database(postgres_url)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(ArtifactBlob)) == 2
        assert s.scalar(select(func.count()).select_from(ArtifactChunk)) == 6
    db.dispose()


def test_the_database_backend_refuses_sqlite(
    make_server: Callable[..., ServerProcess],
) -> None:
    with pytest.raises(AssertionError, match="needs a PostgreSQL database"):
        make_server(HPSEARCH_ARTIFACT_BACKEND="database")
