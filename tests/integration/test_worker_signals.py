"""SIGTERM: a worker hands its trial back cleanly, and another worker completes it.

The trials run ``custom_trainers.gated``: they report step 1, then hold until the test creates
their gate file, so the test observes a worker mid-trial without timing guesses.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import (
    MODULE,
    custom_spec,
    event_kinds,
    running_at_step_1,
    worker_env,
)


def test_sigterm_hands_the_trial_back_and_another_worker_completes_it(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    gate = tmp_path / "gate"
    spec = custom_spec("gated", epochs=2, fixed={"gate": str(gate)})
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        first = server.start_worker(
            "--study", str(study_id), "--worker-id", "first", "--allow", f"{MODULE}:gated"
        )
        (trial,) = wait_for(
            lambda: running_at_step_1(client, study_id, 1), 60, "the trial to report step 1"
        )
        assert trial["worker_id"] == "first"
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
        back = client.trial(trial["id"])
        assert back["state"] == "queued"
        assert event_kinds(client, trial["id"])[-1] == "released"

        gate.touch()
        second = server.start_worker(
            "--study", str(study_id), "--worker-id", "second", "--allow", f"{MODULE}:gated"
        )
        assert second.wait(timeout=60) == 0
        done = client.trial(trial["id"])
    assert done["state"] == "completed"
    assert done["worker_id"] == "second"
    assert done["attempt"] == 2
    assert done["metrics"]["dev_accuracy"] == 0.2


def test_a_second_signal_hands_back_a_trial_whose_epoch_does_not_end(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    spec = custom_spec("stubborn", fixed={"gate": str(tmp_path / "never")})
    log = tmp_path / "loud-worker.log"
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        with open(log, "wb") as out:  # not --quiet: the test reads what the worker says
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "hpsearch.cli", "worker", "--server", server.url),
                    *("--study", str(study_id), "--allow", f"{MODULE}:stubborn"),
                ],
                env=server.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server.workers.append(worker)  # killed by the fixture if the test fails
        (trial,) = wait_for(
            lambda: running_at_step_1(client, study_id, 1), 60, "the trial to report step 1"
        )
        worker.send_signal(signal.SIGTERM)
        # The first signal waits for the epoch, which never ends; the trial stays running
        # until the second one.
        wait_for(
            lambda: "handing back the current trial after this epoch" in log.read_text(),
            30,
            "the worker to acknowledge the first signal",
        )
        assert client.trial(trial["id"])["state"] == "running"
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert client.trial(trial["id"])["state"] == "queued"
        assert event_kinds(client, trial["id"])[-1] == "released"
    assert "handed back to the queue (worker interrupted)" in log.read_text()
