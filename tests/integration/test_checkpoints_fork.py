"""Panda mode with a real server and worker: watch a trial, stop it, fork it from its
checkpoint with a lower learning rate, and watch the fork continue from the parent's epoch."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, digits_spec, wait_for
from tests.integration.test_checkpoints_resume import SLOW_MLP, reported

EPOCHS = 6


def babysat_study() -> dict[str, Any]:
    fixed = {k: v for k, v in SLOW_MLP.items() if k != "hidden_units"}
    return digits_spec(
        name="panda",
        space={
            "lr": {"type": "categorical", "choices": [0.01, 0.001]},
            "hidden_units": {"type": "int", "low": 256, "high": 512},
        },
        sampler={"kind": "random", "seed": 0},
        budget={"max_trials": 1, "parallelism": 1},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": EPOCHS, "fixed": fixed},
    )


@pytest.mark.slow
def test_stop_fork_with_a_lower_lr_and_continue(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    api = f"{server.url}/api/v1"
    study = httpx.post(f"{api}/studies", json=babysat_study()).json()
    worker = server.start_worker(
        "--study", str(study["id"]), "--keep-alive", "--heartbeat", "0.5", "--worker-id", "w"
    )
    parent_url = f"{api}/trials/1"
    wait_for(lambda: reported(parent_url) >= 2, 120, "the parent to report epoch 2")
    assert httpx.post(f"{parent_url}/stop").status_code == 200
    parent = wait_for(
        lambda: (t := httpx.get(parent_url).json())["state"] != "running" and t,
        60,
        "the parent to stop at the end of its epoch",
    )
    assert parent["state"] == "pruned" and parent["last_step"] < EPOCHS
    # A stop saves a checkpoint where the trial stopped: the fork loses no epoch.
    assert parent["checkpoint_step"] == parent["last_step"]
    assert httpx.get(f"{api}/studies/{study['id']}").json()["state"] == "completed"

    refused = _refused_forks(api, study["id"], parent)

    lower = 0.001 if parent["params"]["lr"] == 0.01 else 0.01
    forked = httpx.post(f"{parent_url}/fork", json={"params": {"lr": lower}})
    assert forked.status_code == 201, forked.text
    fork = forked.json()
    assert fork["parent_trial_id"] == parent["id"] and fork["source"] == "fork"
    assert fork["params"] == {**parent["params"], "lr": lower}
    assert fork["state"] == "queued" and fork["checkpoint_step"] == parent["checkpoint_step"]
    # Forking the only trial of an ended study opens it again, with room for the fork.
    reopened = httpx.get(f"{api}/studies/{study['id']}").json()
    assert reopened["state"] == "running" and reopened["counts"]["max_trials"] == 2

    fork_url = f"{api}/trials/{fork['id']}"
    done = wait_for(
        lambda: (t := httpx.get(fork_url).json())["state"] == "completed" and t,
        120,
        "the fork to finish its epochs",
    )
    steps = [p["step"] for p in done["intermediates"]]
    assert steps == list(range(parent["checkpoint_step"] + 1, EPOCHS + 1))
    assert all(p["metrics"]["lr"] == lower for p in done["intermediates"])
    assert done["metrics"]["epochs"] == EPOCHS and done["attempt"] == 1
    assert httpx.get(f"{api}/studies/{study['id']}").json()["state"] == "completed"
    assert refused == {"shape": 422, "outside": 422, "unknown": 404, "no checkpoint": 409}

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def _refused_forks(api: str, study_id: int, parent: dict[str, Any]) -> dict[str, int]:
    """Forks the server must refuse, each with the status it answers."""
    url = f"{api}/trials/{parent['id']}/fork"
    other_width = 256 if parent["params"]["hidden_units"] != 256 else 300
    shape = httpx.post(url, json={"params": {"hidden_units": other_width}})
    assert shape.json()["errors"][0]["field"] == "params.hidden_units", shape.text
    outside = httpx.post(url, json={"params": {"lr": 0.5}})
    assert "outside the space" in outside.json()["message"], outside.text
    unknown = httpx.post(f"{api}/trials/999/fork", json={"params": {"lr": 0.001}})
    # A queued trial (of another, paused study) has trained nothing, so it has no checkpoint.
    other = httpx.post(f"{api}/studies", json=babysat_study()).json()["id"]
    httpx.post(f"{api}/studies/{other}/pause")
    queued = httpx.post(
        f"{api}/studies/{other}/trials", json={"params": {"lr": 0.01, "hidden_units": 256}}
    ).json()
    no_checkpoint = httpx.post(f"{api}/trials/{queued['id']}/fork", json={"params": {}})
    assert "no checkpoint" in no_checkpoint.json()["message"]
    return {
        "shape": shape.status_code,
        "outside": outside.status_code,
        "unknown": unknown.status_code,
        "no checkpoint": no_checkpoint.status_code,
    }
