"""--concurrency K: one worker runs K trials at once, each in its own process, under one id.

The trials run ``custom_trainers.gated``: they report step 1, then hold until the test creates
their gate file, so the test sees both running at once without timing guesses.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import (
    MODULE,
    custom_spec,
    event_kinds,
    running_at_step_1,
    worker_env,
)


def test_concurrency_runs_two_trials_at_once_and_sigterm_hands_both_back(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    gate = tmp_path / "gate"
    spec = custom_spec("gated", trials=3, epochs=2, parallelism=2, fixed={"gate": str(gate)})
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        pair = server.start_worker(
            "--study",
            str(study_id),
            "--worker-id",
            "pair",
            "--concurrency",
            "2",
            "--allow",
            f"{MODULE}:gated",
        )
        running = wait_for(
            lambda: running_at_step_1(client, study_id, 2), 60, "two trials at step 1"
        )
        # Two trials at once, both held by the one worker.
        assert {t["worker_id"] for t in running} == {"pair"}
        workers = {w["id"]: w for w in httpx.get(f"{server.url}/api/v1/workers").json()}
        assert workers["pair"]["devices"] == ["cpu"]

        pair.send_signal(signal.SIGTERM)
        assert pair.wait(timeout=60) == 0
        for t in running:
            assert client.trial(t["id"])["state"] == "queued"
            assert event_kinds(client, t["id"])[-1] == "released"

        gate.touch()
        after = server.start_worker(
            "--study", str(study_id), "--concurrency", "2", "--allow", f"{MODULE}:gated"
        )
        assert after.wait(timeout=60) == 0
        trials = client.trials(study_id)
    assert [t["state"] for t in trials] == ["completed"] * 3
    assert {t["attempt"] for t in trials if t["id"] in {r["id"] for r in running}} == {2}


def test_max_trials_counts_the_trials_of_all_slots(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    with server.client() as client:
        study_id = client.create_study(custom_spec("curve", trials=6, parallelism=2))["id"]
        worker = server.start_worker(
            *("--study", str(study_id), "--concurrency", "2", "--max-trials", "3"),
            *("--allow", f"{MODULE}:curve"),
        )
        assert worker.wait(timeout=60) == 0
        states = [t["state"] for t in client.trials(study_id)]
    assert states.count("completed") == 3
    assert all(s in ("completed", "queued") for s in states)
