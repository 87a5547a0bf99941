"""A worker trains several claimed trials as one pack (workers.packing) against a real server:
each trial gets its own reports, checkpoints and outcome, a stop request ends only its trial,
and the results are the ones train_trial gives each trial alone."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hpsearch.client import Client
from tests.conftest import ServerProcess, digits_spec, wait_for
from workers.loop import Worker, WorkerOptions
from workers.packing import packable, run_pack
from workers.training import train_trial

pytestmark = pytest.mark.slow


def packed_spec(trials: int, epochs: int) -> dict[str, Any]:
    """Random optimizer settings, one architecture: every claim fits one pack."""
    return digits_spec(
        name="packed",
        space={
            "lr": {"type": "float", "low": 0.001, "high": 0.1, "scale": "log"},
            "beta": {"type": "float", "low": 0.5, "high": 0.99, "scale": "reverse_log"},
            "optimizer": {"type": "categorical", "choices": ["momentum", "adam", "sgd"]},
        },
        budget={"max_trials": trials, "parallelism": trials},
        task={
            "trainer": "mlp_classifier",
            "dataset": "digits",
            "epochs": epochs,
            "fixed": {"hidden_units": 32},
        },
    )


def first_claim(worker: Worker, study_id: int) -> dict[str, Any]:
    reply = worker.client.claim(worker.opts.worker_id, "test", ["cpu"], study_id)
    claim: dict[str, Any] | None = reply["trial"]
    assert claim is not None and packable(claim)
    return claim


def test_a_pack_of_claims_trains_each_trial_as_train_trial_would(server: ServerProcess) -> None:
    spec = packed_spec(trials=3, epochs=2)
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        worker = Worker(WorkerOptions(server=server.url, quiet=True, heartbeat_seconds=1))
        assert run_pack(worker, first_claim(worker, study_id), size=4) == 3
        trials = [client.trial(t["id"]) for t in client.trials(study_id)]
    assert [t["state"] for t in trials] == ["completed"] * 3
    for trial in trials:
        assert [p["step"] for p in trial["intermediates"]] == [1, 2]
        alone = train_trial(trial["params"], spec["task"], lambda e, m: False, seed=trial["number"])
        assert trial["metrics"]["dev_loss"] == pytest.approx(alone.metrics["dev_loss"], rel=1e-4)
        assert trial["metrics"]["dev_accuracy"] == pytest.approx(
            alone.metrics["dev_accuracy"], abs=1.5 / 360
        )


def test_a_stop_request_ends_only_its_trial(server: ServerProcess) -> None:
    epochs = 30
    with server.client() as client:
        study_id = client.create_study(packed_spec(trials=3, epochs=epochs))["id"]
        worker = Worker(WorkerOptions(server=server.url, quiet=True, heartbeat_seconds=1))
        claim = first_claim(worker, study_id)
        stopper = threading.Thread(target=stop_after_first_report, args=(server, claim))
        stopper.start()
        run_pack(worker, claim, size=3)
        stopper.join()
        trials = {t["id"]: client.trial(t["id"]) for t in client.trials(study_id)}
    stopped = trials.pop(claim["id"])
    assert stopped["state"] == "pruned"
    assert len(stopped["intermediates"]) < epochs
    for other in trials.values():
        assert other["state"] == "completed"
        assert len(other["intermediates"]) == epochs


def stop_after_first_report(server: ServerProcess, claim: dict[str, Any]) -> None:
    with Client(server.url) as client:
        wait_for(lambda: client.trial(claim["id"])["intermediates"], 60, "the first report")
        client.stop_trial(claim["id"])


def test_claims_of_different_architectures_train_as_separate_packs(server: ServerProcess) -> None:
    spec = packed_spec(trials=4, epochs=1)
    spec["space"]["hidden_units"] = {"type": "categorical", "choices": [16, 32]}
    del spec["task"]["fixed"]["hidden_units"]
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        worker = Worker(WorkerOptions(server=server.url, quiet=True, heartbeat_seconds=1))
        assert run_pack(worker, first_claim(worker, study_id), size=4) == 4
        trials = [client.trial(t["id"]) for t in client.trials(study_id)]
    assert len({t["params"]["hidden_units"] for t in trials}) == 2  # the seed gives both
    assert [t["state"] for t in trials] == ["completed"] * 4
    for trial in trials:
        alone = train_trial(trial["params"], spec["task"], lambda e, m: False, seed=trial["number"])
        assert trial["metrics"]["dev_loss"] == pytest.approx(alone.metrics["dev_loss"], rel=1e-4)


def test_worker_pack_flag_trains_grouped_suggestions_together(server: ServerProcess) -> None:
    """`sampler.pack` groups the architecture; `hpsearch worker --pack` trains each group as
    one pack (each trial's metrics say the pack's size)."""
    spec = packed_spec(trials=8, epochs=1)
    spec["space"]["hidden_units"] = {"type": "int", "low": 16, "high": 128, "scale": "log"}
    del spec["task"]["fixed"]["hidden_units"]
    spec["sampler"] = {"kind": "random", "seed": 3, "pack": 4}
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        worker = server.start_worker("--study", str(study_id), "--pack", "4")
        assert worker.wait(timeout=180) == 0
        trials = client.trials(study_id)
    assert [t["state"] for t in trials] == ["completed"] * 8
    groups = [trials[:4], trials[4:]]
    for group in groups:
        assert len({t["params"]["hidden_units"] for t in group}) == 1
        assert len({t["params"]["lr"] for t in group}) == 4  # the rest stays the sampler's
        assert all(t["metrics"]["pack_size"] == 4 for t in group)
    assert groups[0][0]["params"]["hidden_units"] != groups[1][0]["params"]["hidden_units"]
