"""The trial queue over real HTTP, on SQLite and on PostgreSQL: atomic claims, stateless
servers, leases that refuse late reports, and a server that refuses a schema behind the code."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from hpsearch.client import ApiError, Client
from hpsearch.store import Database
from hpsearch.store.db import alembic_config, upgrade
from hpsearch.store.models import TrialEvent
from tests.conftest import ServerProcess, digits_spec, free_port, wait_for

METRICS = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def claim_everything(
    servers: Sequence[str], study_id: int, claimers: int
) -> list[tuple[int, int, int]]:
    """``claimers`` threads claim and complete trials until the study closes.

    Each claimer sends its requests to the servers in turn, so with two servers a trial is
    often claimed through one and completed through the other. Returns (trial id, number,
    attempt) per claim.
    """
    claims: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    done = threading.Event()

    def claimer(i: int) -> None:
        worker = f"claimer-{i}"
        clients = [Client(url, retry_for=10) for url in servers]
        turn = i
        try:
            while True:
                turn += 1
                reply = clients[turn % len(clients)].claim(worker, "test", [], study_id)
                trial = reply["trial"]
                if trial is None:
                    if not reply["open_studies"]:
                        return
                    # The last trials are still running elsewhere: poll until the study closes.
                    done.wait(0.02)
                    continue
                with lock:
                    claims.append((trial["id"], trial["number"], trial["attempt"]))
                turn += 1
                clients[turn % len(clients)].complete(
                    trial["id"], worker, trial["attempt"], METRICS
                )
        except BaseException as e:
            errors.append(e)
        finally:
            for c in clients:
                c.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "claimers did not finish"
    assert not errors, errors[:3]
    return claims


def assert_each_trial_claimed_once(
    database_url: str, claims: list[tuple[int, int, int]], n_trials: int
) -> None:
    ids = Counter(trial_id for trial_id, _, _ in claims)
    assert len(claims) == n_trials, f"{len(claims)} claims for {n_trials} trials"
    assert max(ids.values()) == 1, [t for t, n in ids.items() if n > 1]
    assert sorted(number for _, number, _ in claims) == list(range(n_trials))
    assert {attempt for _, _, attempt in claims} == {1}
    db = Database(database_url)
    try:
        with db.read() as s:
            per_trial = Counter(
                dict(
                    s.execute(
                        select(TrialEvent.trial_id, func.count())
                        .where(TrialEvent.kind == "claimed")
                        .group_by(TrialEvent.trial_id)
                    ).all()
                )
            )
    finally:
        db.dispose()
    assert per_trial == Counter(dict.fromkeys(ids, 1))


def queue_study(client: Client, sampled: int, enqueued: int) -> int:
    """A study of ``sampled + enqueued`` trials; the enqueued ones wait in the queue."""
    spec = digits_spec(budget={"max_trials": sampled, "parallelism": sampled + enqueued})
    study_id: int = client.create_study(spec)["id"]
    for i in range(enqueued):
        guess = {"lr": 0.001 * (i + 1), "beta": 0.99, "hidden_units": 64, "layers": 2}
        client.enqueue(study_id, {**guess, "batch_size": 64})
    return study_id


@pytest.mark.slow
def test_32_claimers_over_200_trials_claim_each_exactly_once(
    make_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = make_server(database_url)
    with server.client() as client:
        # Some trials wait in the queue (claimed with SKIP LOCKED), the rest are sampled
        # inside the claim (serialized per study): both paths race here.
        study_id = queue_study(client, sampled=180, enqueued=20)
        claims = claim_everything([server.url], study_id, claimers=32)
        study = client.study(study_id)
    assert_each_trial_claimed_once(database_url, claims, 200)
    assert study["state"] == "completed"
    assert study["counts"]["completed"] == 200


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_on_one_postgresql_serve_the_same_workers(
    make_server: Callable[..., ServerProcess], postgres_url: str
) -> None:
    first, second = make_server(postgres_url), make_server(postgres_url)
    with first.client() as client:
        study_id = queue_study(client, sampled=90, enqueued=10)
    claims = claim_everything([first.url, second.url], study_id, claimers=16)
    assert_each_trial_claimed_once(postgres_url, claims, 100)
    for server in (first, second):
        with server.client() as client:
            study = client.study(study_id)
            assert study["state"] == "completed" and study["counts"]["completed"] == 100


def test_a_late_report_after_the_lease_is_lost_gets_409_and_changes_nothing(
    make_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = make_server(database_url, HPSEARCH_LEASE_SECONDS="1")
    with server.client() as client:
        study_id = client.create_study(digits_spec(budget={"max_trials": 1, "parallelism": 1}))[
            "id"
        ]
        first = client.claim("slow", "test", [], study_id)["trial"]
        client.report(first["id"], "slow", 1, 1, {"dev_accuracy": 0.3})

        # The lease runs out without a heartbeat; the next claim re-queues and takes it.
        def reclaimed() -> dict[str, Any] | None:
            trial: dict[str, Any] | None = client.claim("fast", "test", [], study_id)["trial"]
            return trial

        second = wait_for(reclaimed, 30, "the expired trial to be claimed again")
        assert (second["id"], second["attempt"]) == (first["id"], 2)
        assert second["resume_step"] == 1

        for late in (
            lambda: client.report(first["id"], "slow", 1, 2, {"dev_accuracy": 0.9}),
            lambda: client.heartbeat(first["id"], "slow", 1),
            lambda: client.complete(first["id"], "slow", 1, METRICS),
            lambda: client.fail(first["id"], "slow", 1, "boom"),
        ):
            with pytest.raises(ApiError) as refused:
                late()
            assert refused.value.status == 409
            assert refused.value.code == "lease_lost"

        detail = client.trial(first["id"])
        assert detail["state"] == "running" and detail["worker_id"] == "fast"
        assert [p["step"] for p in detail["intermediates"]] == [1]
        assert [e["kind"] for e in detail["events"]] == ["claimed", "lease_expired", "claimed"]

        done = client.complete(second["id"], "fast", 2, METRICS)
        assert done["state"] == "completed" and done["value"] == 0.5


def _revision_before_head() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str), "needs two revisions"
    return head.down_revision


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("make_postgres_database")(migrated=False)
        return url
    return f"sqlite:///{tmp_path / 'old.db'}"


def test_the_server_refuses_a_schema_behind_the_code_and_says_how_to_upgrade(
    make_server: Callable[..., ServerProcess], empty_database_url: str
) -> None:
    url = empty_database_url
    upgrade(url, _revision_before_head())
    env = {**os.environ, "HPSEARCH_DATABASE_URL": url, "HPSEARCH_PORT": str(free_port())}
    refused = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "hpsearch db upgrade" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    upgraded = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "db", "upgrade", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    server = make_server(url)
    assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"


def test_a_resent_claim_gets_the_same_lease_even_after_a_restart(
    make_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = make_server(database_url)
    spec = digits_spec(budget={"max_trials": 10, "parallelism": 10})
    with server.client() as client:
        study_id = client.create_study(spec)["id"]

    def claim(request_id: str) -> tuple[int, int]:
        body = {"worker_id": "w1", "study_id": study_id, "request_id": request_id}
        r = httpx.post(f"{server.url}/api/v1/claims", json=body, timeout=30)
        assert r.status_code == 200, r.text
        trial = r.json()["trial"]
        return trial["id"], trial["attempt"]

    # The first claim samples in a transaction; the second takes a queued trial (on
    # PostgreSQL, in the one-statement claim): each keeps its key.
    first, second = claim("key-1"), claim("key-2")
    assert first != second
    assert claim("key-1") == first and claim("key-2") == second
    server.stop()  # as if it crashed after committing, before its reply arrived
    server.start()
    assert claim("key-2") == second and claim("key-1") == first
    third = claim("key-3")
    assert third not in (first, second)
    with server.client() as client:
        running = client.trials(study_id)
        assert sorted(t["id"] for t in running if t["state"] == "running") == sorted(
            [first[0], second[0], third[0]]
        )
        # A key whose trial the worker no longer holds claims afresh.
        client.complete(first[0], "w1", first[1], METRICS)
    assert claim("key-1") not in (first, second, third)
