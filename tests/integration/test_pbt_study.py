"""A population-based-training study with a real server and two real workers: weak trials are
replaced by perturbed copies of strong ones' checkpoints, the lineage is stored, every trial's
checkpoint comes from its own lineage, and killing a worker loses nothing."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, digits_spec, wait_for

EPOCHS = 6
POPULATION = 4


def pbt_study() -> dict[str, Any]:
    return digits_spec(
        name="pbt-e2e",
        # Learning rates four decades apart: the slow ones are clearly the weak ones.
        space={"lr": {"type": "float", "low": 1e-4, "high": 0.3, "scale": "log"}},
        constraints=[],
        sampler={"kind": "random", "seed": 3},
        scheduler={
            "kind": "pbt",
            "population": POPULATION,
            "interval": 2,
            "quantile": 0.5,
            "perturb": [0.8, 1.2],
            "resample_probability": 0.25,
        },
        budget={"max_trials": POPULATION, "parallelism": POPULATION, "max_attempts": 3},
        task={
            "trainer": "mlp_classifier",
            "dataset": "digits",
            "epochs": EPOCHS,
            # Small batches: an epoch takes long enough to kill a worker in the middle.
            "fixed": {"layers": 1, "hidden_units": 256, "batch_size": 8, "optimizer": "sgd"},
        },
    )


@pytest.mark.slow
def test_pbt_exploits_store_lineage_and_survive_a_killed_worker(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="6")
    api = f"{server.url}/api/v1"
    created = httpx.post(f"{api}/studies", json=pbt_study())
    assert created.status_code == 201, created.text
    study = created.json()
    args = ("--study", str(study["id"]), "--heartbeat", "0.3")
    # One slot: the trial runs in the worker's own process, which SIGKILL ends at once (with
    # more, each slot is a child process of its own).
    doomed = server.start_worker(*args, "--worker-id", "doomed")
    survivor = server.start_worker(*args, "--concurrency", "2", "--worker-id", "survivor")

    def lineage() -> list[dict[str, Any]]:
        return list(httpx.get(f"{api}/studies/{study['id']}/lineage").json()["trials"])

    def doomed_is_mid_trial() -> bool:
        """The doomed worker holds a trial with epochs still ahead of it."""
        return any(
            t["state"] == "running"
            and t["worker_id"] == "doomed"
            and 1 <= (t["last_step"] or 0) <= EPOCHS - 3
            for link in lineage()
            if (t := httpx.get(f"{api}/trials/{link['trial_id']}").json())
        )

    wait_for(doomed_is_mid_trial, 120, "the doomed worker in the middle of a trial")
    doomed.send_signal(signal.SIGKILL)  # its leases must run out and be taken over
    doomed.wait(timeout=10)
    assert survivor.wait(timeout=120) == 0  # it leaves once the study is done

    done = httpx.get(f"{api}/studies/{study['id']}").json()
    assert done["state"] == "completed", done
    trials: dict[int, dict[str, Any]] = {}
    links = lineage()
    for link in links:
        trials[link["trial_id"]] = httpx.get(f"{api}/trials/{link['trial_id']}").json()
    # Nothing lost: every trial ended, none failed; the killed worker's came back to the queue.
    states = [t["state"] for t in trials.values()]
    assert set(states) <= {"completed", "pruned"} and "completed" in states, states
    kinds = [e["kind"] for t in trials.values() for e in t["events"]]
    assert "lease_expired" in kinds
    # Each exploit stopped one trial and queued its replacement from a top trial's checkpoint.
    copied = [link for link in links if link["parent_trial_id"] is not None]
    assert copied and kinds.count("exploit") == len(copied) == kinds.count("explore")
    population = [t for t in trials.values() if t["source"] == "sampler"]
    assert len(population) == POPULATION
    for link in copied:
        trial, parent = trials[link["trial_id"]], trials[link["parent_trial_id"]]
        assert trial["source"] == "pbt" and trial["parent_trial_id"] == parent["id"]
        assert 1 <= link["step"] < EPOCHS
        # It trained on from the epoch after the copy, not from epoch 1.
        steps = [p["step"] for p in trial["intermediates"]]
        assert steps and steps[0] == link["step"] + 1
    # Every trial's checkpoint belongs to its own lineage: its own (attempt >= 1) after the
    # epoch it started from, or, for one replaced before it saved any, its parent's copy.
    start = {link["trial_id"]: link["step"] or 0 for link in links}
    for trial_id, trial in trials.items():
        info = httpx.get(f"{api}/trials/{trial_id}/checkpoint/info")
        if trial["state"] == "completed":
            assert info.status_code == 200 and info.json()["step"] == EPOCHS
        if info.status_code != 200:
            continue
        saved = info.json()
        if saved["attempt"] == 0:
            assert trial["parent_trial_id"] is not None and saved["step"] == start[trial_id]
        else:
            assert saved["step"] > start[trial_id]
    # The schedule of each final trial: its ancestors' params, epoch range by range, to the end.
    schedules = []
    for final in (t for t in trials.values() if t["state"] == "completed"):
        segments = httpx.get(f"{api}/trials/{final['id']}/schedule").json()["segments"]
        assert segments[0]["first_epoch"] == 1 and segments[-1]["last_epoch"] == EPOCHS
        assert segments[-1]["trial_id"] == final["id"]
        assert segments[-1]["params"] == final["params"]
        for before, after in itertools.pairwise(segments):
            assert after["first_epoch"] == before["last_epoch"] + 1
        schedules.append(len(segments))
    assert max(schedules) >= 2  # some final trial carries an exploited lineage
