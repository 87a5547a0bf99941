"""Pruning end to end: the server decides from all trials' curves, the worker stops the trial
at its next report, and the trial is recorded ``pruned``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpsearch.client import Client
from tests.conftest import ServerProcess, digits_spec
from tests.integration.test_worker_custom import MODULE, custom_spec, worker_env

ASHA = {"kind": "asha", "min_resource": 1, "reduction_factor": 3}


def _run_study(server: ServerProcess, client: Client, spec: dict[str, Any]) -> list[dict[str, Any]]:
    study_id = client.create_study(spec)["id"]
    worker = server.start_worker("--study", str(study_id), "--allow", f"{MODULE}:curve")
    assert worker.wait(timeout=120) == 0
    return [client.trial(t["id"]) for t in client.trials(study_id)]


def _epochs(trials: list[dict[str, Any]]) -> int:
    return sum(len(t["intermediates"]) for t in trials)


def test_asha_spends_fewer_epochs_than_no_pruning_and_keeps_the_best(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    # Twelve trials of nine epochs; one worker, so ASHA's decisions are deterministic. The
    # curves never cross (custom_trainers.curve), as ASHA's early judgement assumes.
    base = custom_spec("curve", trials=12, epochs=9)
    with server.client() as client:
        full = _run_study(server, client, {**base, "name": "no-pruning"})
        pruned = _run_study(server, client, {**base, "name": "asha", "pruner": ASHA})

    assert _epochs(full) == 12 * 9
    assert all(t["state"] == "completed" for t in full)
    # Same sampler seed: the same twelve configurations, trial by trial.
    assert [t["params"] for t in pruned] == [t["params"] for t in full]
    stopped = [t for t in pruned if t["state"] == "pruned"]
    assert len(stopped) >= 6
    assert _epochs(pruned) <= 12 * 9 // 2
    # Each pruned trial stopped at a rung (step 1 or 3), with the reason in its history.
    for t in stopped:
        assert [p["step"] for p in t["intermediates"]][-1] in (1, 3)
        prune_events = [e for e in t["events"] if e["kind"] == "prune"]
        assert len(prune_events) == 1 and prune_events[0]["detail"].startswith("asha: ")
        assert t["metrics"]["dev_accuracy"] == t["intermediates"][-1]["metrics"]["dev_accuracy"]
    # Curves that never cross: the best configuration is never pruned, so the search finds the
    # same best trial for half the epochs.
    best_full = max(full, key=lambda t: t["value"])
    best_pruned = max((t for t in pruned if t["state"] == "completed"), key=lambda t: t["value"])
    assert best_pruned["params"] == best_full["params"]


def test_built_in_trainer_is_pruned_by_the_median_rule(server: ServerProcess) -> None:
    spec = digits_spec(
        budget={"max_trials": 6, "parallelism": 1},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 3},
        pruner={"kind": "median", "n_startup_trials": 2},
    )
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        worker = server.start_worker("--study", str(study_id))
        assert worker.wait(timeout=180) == 0
        trials = [client.trial(t["id"]) for t in client.trials(study_id)]
        study = client.study(study_id)
    stopped = [t for t in trials if t["state"] == "pruned"]
    assert stopped, [t["intermediates"] for t in trials]
    assert study["counts"]["pruned"] == len(stopped)
    for t in stopped:
        assert len(t["intermediates"]) < 3
        assert {"dev_accuracy", "train_accuracy", "n_params"} <= t["metrics"].keys()
    # The first two trials complete before the rule may judge anyone.
    assert [t["state"] for t in trials[:2]] == ["completed", "completed"]
