"""SIGTERM to a worker whose entry point watches ``trial.should_stop`` and returns before its
last epoch: the trial is handed back (not completed with that epoch's metrics), and the next
worker resumes it from its checkpoint."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import MODULE, worker_env


def test_an_entry_point_that_returns_on_shutdown_hands_its_trial_back(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    spec: dict[str, Any] = {
        "name": "hand-back",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {"hold_at": {"type": "categorical", "choices": [2]}},
        "budget": {"max_trials": 1, "parallelism": 1},
        "task": {"trainer": "custom", "entry_point": f"{MODULE}:checkpointed", "epochs": 4},
    }
    allow = ["--allow", f"{MODULE}:checkpointed"]
    with server.client() as client:
        study = client.create_study(spec)
        first = server.start_worker("--study", str(study["id"]), *allow)
        (held,) = wait_for(
            lambda: [t for t in client.trials(study["id"]) if (t["checkpoint_step"] or 0) >= 2],
            60,
            "a checkpoint at step 2",
        )
        first.send_signal(signal.SIGTERM)  # checkpointed returns as soon as should_stop
        assert first.wait(timeout=30) == 0
        handed_back = client.trial(held["id"])
        assert handed_back["state"] == "queued", handed_back
        second = server.start_worker("--study", str(study["id"]), *allow)
        assert second.wait(timeout=60) == 0
        trial = client.trial(held["id"])
    assert trial["state"] == "completed" and trial["attempt"] == 2, trial
    assert trial["metrics"]["first_step"] == 3  # resumed after its checkpoint at step 2
