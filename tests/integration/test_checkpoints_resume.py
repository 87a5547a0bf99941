"""A worker killed mid-trial: its lease runs out, another worker claims the trial again and
resumes it from the checkpoint the first one uploaded, not from epoch 1."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, digits_spec, wait_for

EPOCHS = 6
# Wide layers and small batches: an epoch takes a good fraction of a second, so a worker
# seen at epoch 2 is surely killed before it reaches epoch 6.
SLOW_MLP = {"layers": 3, "hidden_units": 512, "batch_size": 8, "optimizer": "momentum"}


def one_slow_trial(epochs: int = EPOCHS, **task: Any) -> dict[str, Any]:
    return digits_spec(
        space={"lr": {"type": "categorical", "choices": [0.01]}},
        budget={"max_trials": 1, "parallelism": 1, "max_attempts": 3},
        task={
            "trainer": "mlp_classifier",
            "dataset": "digits",
            "epochs": epochs,
            "fixed": SLOW_MLP,
            **task,
        },
    )


def reported(trial_url: str) -> int:
    """The last step the trial reported; 0 before it exists (it is sampled at its claim)."""
    response = httpx.get(trial_url)
    return int(response.json()["last_step"] or 0) if response.status_code == 200 else 0


@pytest.mark.slow
def test_a_killed_trial_resumes_from_its_checkpoint(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="3")
    api = f"{server.url}/api/v1"
    study = httpx.post(f"{api}/studies", json=one_slow_trial()).json()
    trial_url = f"{api}/trials/1"

    first = server.start_worker(
        "--study", str(study["id"]), "--worker-id", "a", "--heartbeat", "0.5"
    )
    wait_for(lambda: reported(trial_url) >= 2, 120, "epoch 2 reported")
    first.send_signal(signal.SIGKILL)  # no hand-back, no goodbye: the lease must run out
    first.wait(timeout=10)
    killed_at = httpx.get(trial_url).json()
    assert killed_at["state"] == "running" and killed_at["checkpoint_step"] >= 1
    assert killed_at["last_step"] < EPOCHS

    second = server.start_worker(
        "--study", str(study["id"]), "--worker-id", "b", "--heartbeat", "0.5"
    )
    assert second.wait(timeout=180) == 0
    trial = httpx.get(trial_url).json()
    assert trial["state"] == "completed" and trial["attempt"] == 2 and trial["worker_id"] == "b"
    assert trial["metrics"]["epochs"] == EPOCHS
    assert "lease_expired" in [e["kind"] for e in trial["events"]]

    points = trial["intermediates"]
    assert [p["step"] for p in points] == list(range(1, EPOCHS + 1))
    resumed = [p["step"] for p in points if p["attempt"] == 2]
    # The second attempt picked up after the checkpoint, not at epoch 1...
    assert resumed[0] > 1
    assert resumed == list(range(resumed[0], EPOCHS + 1))
    # ...and after (at least) the checkpoint the first attempt had uploaded when it died.
    assert resumed[0] >= killed_at["checkpoint_step"] + 1
    assert all(p["attempt"] == 1 for p in points if p["step"] < resumed[0])

    info = httpx.get(f"{trial_url}/checkpoint/info").json()
    assert (info["step"], info["attempt"]) == (EPOCHS, 2)
