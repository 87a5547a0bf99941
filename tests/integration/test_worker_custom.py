"""Custom training code: a worker runs only the entry points its command line allows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hpsearch.client import Client
from tests.conftest import REPO, ServerProcess

MODULE = "tests.integration.custom_trainers"


def custom_spec(function: str, *, trials: int = 1, epochs: int = 3, **extra: Any) -> dict[str, Any]:
    """A study of ``tests/integration/custom_trainers.py:function`` over ``quality``."""
    task: dict[str, Any] = {"trainer": "custom", "entry_point": f"{MODULE}:{function}"}
    task.update(epochs=epochs, fixed=extra.pop("fixed", {}))
    return {
        "name": f"custom-{function}",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {"quality": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"kind": "random", "seed": 0},
        "budget": {"max_trials": trials, "parallelism": extra.pop("parallelism", 1)},
        "task": task,
        **extra,
    }


def worker_env(tmp_path: Path) -> dict[str, str]:
    """Makes ``tests`` importable from the worker whatever its working directory, and tells
    the entry-point module where to leave its import marker."""
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "HPSEARCH_TEST_IMPORT_MARKER": str(tmp_path / "imported"),
    }


def running_at_step_1(client: Client, study_id: int, n: int) -> list[dict[str, Any]] | None:
    """The study's running trials once exactly ``n`` of them have reported step 1."""
    trials = [t for t in client.trials(study_id) if t["state"] == "running"]
    at_step_1 = [t for t in trials if t["last_step"] == 1]
    return at_step_1 if len(at_step_1) == n else None


def event_kinds(client: Client, trial_id: int) -> list[str]:
    return [e["kind"] for e in client.trial(trial_id)["events"]]


def run_worker(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """A worker in the foreground, not quiet, so its terminal output can be read."""
    return subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "worker", "--server", server.url, *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_worker_is_never_given_an_entry_point_it_does_not_allow(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    with server.client() as client:
        study = client.create_study(custom_spec("curve"))
        # Allowed: a different function of the same module; the study's one is not.
        done = run_worker(server, "--study", str(study["id"]), "--allow", f"{MODULE}:gated")
        # The same with two slots: the worker's exit code is its slots' worst, 2 here too.
        slots = run_worker(
            server, "--study", str(study["id"]), "--allow", f"{MODULE}:gated", "--concurrency", "2"
        )
        trials = client.trials(study["id"])
    # Bound to that study, the worker could never run anything: it says so and exits.
    assert done.returncode == 2, done.stderr
    assert slots.returncode == 2, slots.stderr
    assert (
        f"study {study['id']} runs entry point {MODULE}:curve, which this worker does not "
        f"allow: start it with --allow {MODULE}:curve"
    ) in done.stdout
    assert trials == [], "a trial was handed to a worker that cannot run it"
    assert not (tmp_path / "imported").exists(), "the refused module was imported"


def test_an_allowed_entry_point_runs_and_its_metrics_are_stored(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    with server.client() as client:
        study = client.create_study(custom_spec("curve", trials=2, epochs=3))
        done = run_worker(server, "--study", str(study["id"]), "--allow", f"{MODULE}:curve")
        assert done.returncode == 0, done.stderr
        trials = client.trials(study["id"])
        details = [client.trial(t["id"]) for t in trials]
    assert (tmp_path / "imported").exists()
    for trial, detail in zip(trials, details, strict=True):
        assert trial["state"] == "completed"
        quality = trial["params"]["quality"]
        expected = quality * (1 - 0.6**3)
        assert trial["metrics"]["dev_accuracy"] == pytest.approx(expected)
        assert trial["metrics"]["steps"] == 3
        assert trial["value"] == pytest.approx(expected)
        assert [p["step"] for p in detail["intermediates"]] == [1, 2, 3]
    # Progress on the terminal: one line per epoch (not a TTY), with the dev metrics; and
    # none of httpx's per-request log lines.
    first = trials[0]
    line = f"trial {first['number']} epoch 3/3 [####################] dev_accuracy="
    assert line in done.stdout
    assert "HTTP Request" not in done.stdout + done.stderr


def test_a_crash_in_custom_code_fails_the_trial_with_its_traceback(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    with server.client() as client:
        study = client.create_study(custom_spec("crash"))
        done = run_worker(server, "--study", str(study["id"]), "--allow", f"{MODULE}:crash")
        assert done.returncode == 0, done.stderr
        (trial,) = client.trials(study["id"])
    assert trial["state"] == "failed"
    assert "Traceback (most recent call last)" in trial["error"]
    assert 'custom_trainers.py", line' in trial["error"]
    assert (
        trial["error"]
        .strip()
        .endswith("ZeroDivisionError: the user's training code divided by zero")
    )


def test_worker_refuses_to_start_with_a_bad_allow(server: ServerProcess) -> None:
    done = run_worker(server, "--allow", "no_such_module_here:train")
    assert done.returncode == 2
    assert "--allow no_such_module_here:train: no module named 'no_such_module_here'" in (
        done.stderr
    )
    done = run_worker(server, "--allow", "train")
    assert done.returncode == 2
    assert "expected module:function" in done.stderr
