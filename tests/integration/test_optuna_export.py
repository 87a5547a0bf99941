"""Export to an Optuna storage: optuna sees the trials, values, constraints and curves."""

from __future__ import annotations

from pathlib import Path

import optuna

from hpsearch.optuna_interop import export_study
from tests.conftest import ServerProcess, digits_spec


def test_export_to_optuna_storage(server: ServerProcess, tmp_path: Path) -> None:
    client = server.client()
    study_id = client.create_study(digits_spec(budget={"max_trials": 3, "parallelism": 3}))["id"]
    outcomes = [
        ({"dev_accuracy": 0.9, "latency_ms": 50.0}, False),
        ({"dev_accuracy": 0.95, "latency_ms": 500.0}, False),
        ({"dev_accuracy": 0.4}, True),
    ]
    for i, (metrics, pruned) in enumerate(outcomes):
        c = client.claim(f"w{i}", "host", [])["trial"]
        client.report(c["trial_id"], f"w{i}", 1, 1, {"dev_accuracy": metrics["dev_accuracy"]})
        client.complete(c["trial_id"], f"w{i}", 1, metrics, pruned=pruned)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = export_study(client, study_id, storage)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[0].params.keys() == digits_spec()["space"].keys()
    assert trials[0].intermediate_values == {1: 0.9}
    # Optuna's convention: constraint values <= 0 are feasible.
    assert trials[0].constraints == {"latency_ms ≤ 100": -50.0}
    assert trials[1].constraints == {"latency_ms ≤ 100": 400.0}
    # Optuna reads the constraints too: its best trial is our best feasible one.
    assert study.best_trial.value == 0.9
    assert study.user_attrs["hpsearch_scales"]["beta"] == "reverse_log"
