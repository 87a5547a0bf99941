"""Processes that die, on SQLite and on PostgreSQL: a worker killed mid-trial (its trial comes
back after the lease and another worker finishes it) and the server killed mid-study (workers
retry with backoff; nothing reported before the kill is lost).

The trials run ``custom_trainers.gated``: each reports step 1, then holds until the test creates
the gate file, so the test kills processes at a known point instead of guessing at timings.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hpsearch.client import Client
from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import MODULE, custom_spec, running_at_step_1, worker_env


def gated_study(client: Client, gate: Path, trials: int, parallelism: int) -> int:
    spec = custom_spec(
        "gated", trials=trials, epochs=3, parallelism=parallelism, fixed={"gate": str(gate)}
    )
    study_id: int = client.create_study(spec)["id"]
    return study_id


def start_worker(server: ServerProcess, study_id: int, worker_id: str) -> Any:
    return server.start_worker(
        "--study",
        str(study_id),
        "--worker-id",
        worker_id,
        "--allow",
        f"{MODULE}:gated",
        "--heartbeat",
        "0.3",
    )


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_it_to_another_after_the_lease(
    make_server: Callable[..., ServerProcess], database_url: str, tmp_path: Path
) -> None:
    server = make_server(database_url, HPSEARCH_LEASE_SECONDS="2", **worker_env(tmp_path))
    gate = tmp_path / "gate"
    with server.client() as client:
        study_id = gated_study(client, gate, trials=3, parallelism=1)
        doomed = start_worker(server, study_id, "doomed")
        (trial,) = wait_for(
            lambda: running_at_step_1(client, study_id, 1), 60, "the trial to report step 1"
        )
        assert trial["worker_id"] == "doomed"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)

        gate.touch()
        survivor = start_worker(server, study_id, "survivor")
        assert survivor.wait(timeout=120) == 0
        study = client.study(study_id)
        trials = client.trials(study_id)
        killed = client.trial(trial["id"])

    assert study["state"] == "completed"
    assert study["counts"]["completed"] == 3 == len(trials)
    assert sorted(t["number"] for t in trials) == [0, 1, 2]
    assert killed["state"] == "completed"
    assert (killed["worker_id"], killed["attempt"]) == ("survivor", 2)
    kinds = [e["kind"] for e in killed["events"]]
    assert kinds[:3] == ["claimed", "lease_expired", "claimed"] and kinds[-1] == "completed"
    assert [e["worker_id"] for e in killed["events"][:2]] == ["doomed", "doomed"]
    assert all(t["attempt"] == 1 for t in trials if t["id"] != trial["id"])


@pytest.mark.slow
def test_a_server_killed_mid_study_comes_back_and_the_study_finishes(
    make_server: Callable[..., ServerProcess], database_url: str, tmp_path: Path
) -> None:
    # The lease outlasts the restart: running trials stay their workers' throughout.
    server = make_server(database_url, HPSEARCH_LEASE_SECONDS="60", **worker_env(tmp_path))
    gate = tmp_path / "gate"
    with server.client() as client:
        study_id = gated_study(client, gate, trials=5, parallelism=3)
        workers = [start_worker(server, study_id, f"w{i}") for i in range(2)]
        held = wait_for(
            lambda: running_at_step_1(client, study_id, 2), 60, "two trials to report step 1"
        )
        # A third trial is claimed and completed through the API before the kill.
        claim = client.claim("by-hand", "test", [], study_id, [f"{MODULE}:gated"])["trial"]
        for step in (1, 2, 3):
            client.report(claim["id"], "by-hand", 1, step, {"dev_accuracy": 0.1 * step})
        before = client.complete(
            claim["id"], "by-hand", 1, {"dev_accuracy": 0.77, "latency_ms": 1.0}
        )

    server.stop(signal.SIGKILL)
    # The held trials now report their next steps into a dead server: their workers retry.
    gate.touch()
    server.start()

    for w in workers:
        assert w.wait(timeout=120) == 0
    with server.client() as client:
        study = client.study(study_id)
        trials = {t["id"]: t for t in client.trials(study_id)}
        details = {t["id"]: client.trial(t["id"]) for t in held}

    assert study["state"] == "completed"
    assert study["counts"]["completed"] == 5 == len(trials)
    after = trials[claim["id"]]
    assert after["state"] == "completed" and after["worker_id"] == "by-hand"
    assert (after["value"], after["metrics"]) == (before["value"], before["metrics"])
    for t in held:
        done = details[t["id"]]
        assert done["state"] == "completed" and done["worker_id"] == t["worker_id"]
        assert done["attempt"] == 1, "the restart must not cost a trial its lease"
        steps = [(p["step"], p["metrics"]["dev_accuracy"]) for p in done["intermediates"]]
        assert steps[0] == (1, pytest.approx(0.1))
        assert [s for s, _ in steps] == [1, 2, 3]
