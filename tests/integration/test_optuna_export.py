"""Export to an Optuna storage: optuna sees the trials, values, constraints and curves."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import httpx
import optuna
import optuna_dashboard
import pytest

from hpsearch.optuna_interop import MISSING_VIOLATION, export_study
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
        client.report(c["id"], f"w{i}", 1, 1, {"dev_accuracy": metrics["dev_accuracy"]})
        client.complete(c["id"], f"w{i}", 1, metrics, pruned=pruned)

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = export_study(client, study_id, storage)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[0].params.keys() == digits_spec()["space"].keys()
    assert trials[0].intermediate_values == {1: 0.9}
    # Optuna's convention: constraint values <= 0 are feasible; both of its forms are
    # written, the list a constraints_func writes ("0") and the named one.
    assert trials[0].constraints == {"0": -50.0, "latency_ms ≤ 100": -50.0}
    assert trials[1].constraints == {"0": 400.0, "latency_ms ≤ 100": 400.0}
    # Optuna reads the constraints too: its best trial is our best feasible one.
    assert study.best_trial.value == 0.9
    assert study.user_attrs["hpsearch_scales"]["beta"] == "reverse_log"

    # optuna-dashboard's own API, over the exported storage, reports every trial's
    # constraint values (a missing metric as the largest finite violation: valid JSON).
    dashboard = httpx.Client(
        transport=httpx.WSGITransport(app=optuna_dashboard.wsgi(storage)),
        base_url="http://dashboard",
    )
    listed = dashboard.get("/api/studies").json()["study_summaries"]
    dashboard_id = next(s["study_id"] for s in listed if s["study_name"] == name)
    detail = dashboard.get(f"/api/studies/{dashboard_id}")
    assert detail.status_code == 200
    shown = json.loads(detail.text, parse_constant=_no_constant)
    assert [t["constraints"] for t in shown["trials"]] == [[-50.0], [400.0], [MISSING_VIOLATION]]

    # Exporting again under the same name: one line, exit 1, no traceback.
    again = _cli(
        "export-optuna", str(study_id), "--storage", storage, "--name", name, "--server", server.url
    )
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.count("\n") == 1 and name in again.stderr, again.stderr


def _no_constant(token: str) -> float:
    raise AssertionError(f"{token} in the dashboard's JSON")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_an_unknown_optuna_study_says_so_in_one_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="there")
    study_id = server.client().create_study(digits_spec())["id"]
    out = _cli(
        "import-optuna",
        "--storage",
        storage,
        "--optuna-study",
        "not-there",
        "--into",
        str(study_id),
        "--server",
        server.url,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "not-there" in out.stderr and "there" in out.stderr


def test_import_optuna_study_as_history(server: ServerProcess, tmp_path: Path) -> None:
    """An Optuna study's trials become a study's history: ranked, counted, and the ground
    coarse-to-fine zooms in from."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    source = optuna.create_study(
        storage=storage,
        study_name="old-search",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.suggest_float("beta", 0.9, 0.999)
        trial.suggest_int("hidden_units", 16, 256, log=True)
        trial.suggest_int("layers", 1, 3)
        trial.suggest_categorical("batch_size", [32, 64, 128])
        trial.set_user_attr("latency_ms", 5.0)
        return 1.0 - abs(math.log10(lr) + 2)  # best near lr = 0.01

    source.optimize(objective, n_trials=20)
    spec = digits_spec(
        sampler={
            "kind": "coarse_to_fine",
            "rounds": 3,
            "trials_per_round": 10,
            "top_k": 3,
            "seed": 0,
        },
        budget={"max_trials": 5, "parallelism": 1},
    )
    client = server.client()
    study_id = client.create_study(spec)["id"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "import-optuna",
            "--storage",
            storage,
            "--optuna-study",
            "old-search",
            "--into",
            str(study_id),
            "--server",
            server.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "imported 20 trials" in out.stdout
    study = client.study(study_id)
    assert study["counts"]["completed"] == 20 and study["counts"]["max_trials"] == 25
    assert study["best"]["value"] == pytest.approx(source.best_value)
    assert study["best"]["params"] == source.best_params
    # The next suggestion comes from round 3, zoomed on the imported trials' best.
    claim = client.claim("w", "host", [])["trial"]
    assert claim["number"] == 20
    rounds = client.regions(study_id)["rounds"]
    assert rounds[-1]["round"] == 3 and all(n < 20 for n in rounds[-1]["based_on"])
    lo, hi = rounds[-1]["params"]["lr"]["values"]
    assert lo <= claim["params"]["lr"] <= hi and hi / lo < 1e4  # narrower than the whole range
