"""The notebook's Study handle (``hpsearch.connect``) against a real server and database:
ask/tell and its lease, optimize in threads, the DataFrame, partial enqueue and extend."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import hpsearch
from hpsearch.errors import InvalidState, LeaseLost
from hpsearch.trial_lease import TrialLike
from tests.conftest import REPO, ServerProcess, wait_for


def notebook_spec(**overrides: Any) -> dict[str, Any]:
    """A study whose trials run in the caller's process: its entry point is no worker's."""
    spec: dict[str, Any] = {
        "name": "notebook",
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {
            "lr": {"type": "float", "low": 0.0001, "high": 1.0, "scale": "log"},
            "units": {"type": "int", "low": 8, "high": 64},
            "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        },
        "sampler": {"kind": "random", "seed": 0},
        "budget": {"max_trials": 4, "parallelism": 2},
        "task": {"trainer": "custom", "entry_point": "notebook:train", "epochs": 3},
    }
    spec.update(overrides)
    return spec


def test_a_late_tell_after_the_lease_expired_is_refused_clearly(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="1")
    hs = hpsearch.connect(server.url)
    study = hs.create_study(notebook_spec(budget={"max_trials": 1, "parallelism": 1}))
    # A kernel suspended past its lease: no heartbeats.
    late = study.ask(heartbeat=False)
    assert set(late.params) == {"lr", "units", "act"}
    assert isinstance(late, TrialLike)
    other = hs.load_study(study.id)  # another process: another worker id

    def taken() -> hpsearch.TrialLease | None:
        try:
            return other.ask(timeout=0.2)
        except TimeoutError:
            return None

    again = wait_for(taken, 20, "the expired trial to be claimed again")
    assert (again.number, again.attempt) == (late.number, 2)
    with pytest.raises(LeaseLost, match=r"study \d+ trial 0 \(attempt 1\).*lease expired"):
        study.tell(late, {"loss": 0.1})
    other.tell(again, {"loss": 0.2})
    assert study.best_trial is not None and study.best_trial.value == 0.2
    with pytest.raises(hpsearch.StudyEnded, match="no trial left"):
        study.ask()


def test_ask_in_a_with_block_completes_or_fails_the_trial(server: ServerProcess) -> None:
    study = hpsearch.connect(server.url).create_study(notebook_spec())
    with study.ask() as trial:
        assert trial.report(1, loss=0.5) is False
        trial.report(2, {"loss": 0.25})
    with pytest.raises(ZeroDivisionError), study.ask():
        _ = 1 / 0
    first, second = study.trials()[:2]
    assert (first.state, first.metrics, first.url) == (
        "completed",
        {"loss": 0.25},
        f"/studies/{study.id}/trials/0",
    )
    assert second.state == "failed" and "ZeroDivisionError" in (second.error or "")
    # The trial's page at the address users see, and at its global id.
    by_number = httpx.get(server.url + first.url)
    assert by_number.status_code == 200 and "<title>Trial 0 · notebook" in by_number.text
    by_id = httpx.get(f"{server.url}/trials/{first.id}").text
    assert "<title>Trial 0 · notebook" in by_id
    assert httpx.get(f"{server.url}/studies/{study.id}/trials/99").status_code == 404
    # A replay of a schedule is a worker's to train (it resumes the trainer at each change of
    # hyperparameters): the notebook hands it back and says so.
    with server.client() as client:
        replay = client.replay(first.id)
        with pytest.raises(InvalidState, match="replays a PBT schedule, which only a worker"):
            study.ask()
        again = client.trial(replay["id"])
    assert again["state"] == "queued" and "released" in [e["kind"] for e in again["events"]]


def test_optimize_runs_trials_in_two_threads(server: ServerProcess) -> None:
    study = hpsearch.connect(server.url).create_study(
        notebook_spec(budget={"max_trials": 6, "parallelism": 2})
    )
    together = threading.Barrier(2, timeout=30)  # the first two trials must overlap
    seen: list[int] = []

    def train(trial: TrialLike) -> dict[str, float]:
        seen.append(trial.number)
        if len(seen) <= 2:
            together.wait()
        for step in range(1, 3):
            trial.report(step, loss=trial.params["lr"] / step)
        return {"loss": trial.params["lr"] / 2}

    study.optimize(train, n_jobs=2)
    ended = study.trials()
    assert sorted(seen) == list(range(6))
    assert [t.state for t in ended] == ["completed"] * 6
    assert study.info["state"] == "completed"


def test_optimize_stops_at_n_trials_and_raises_the_functions_error(server: ServerProcess) -> None:
    study = hpsearch.connect(server.url).create_study(notebook_spec())
    study.optimize(lambda trial: {"loss": 1.0}, n_trials=1)
    assert [t.state for t in study.trials()][:1] == ["completed"]
    assert all(t.state == "queued" for t in study.trials()[1:])  # sampled ahead, not run

    def broken(trial: TrialLike) -> dict[str, float]:
        raise ValueError("bad lr")

    with pytest.raises(ValueError, match="bad lr"):
        study.optimize(broken)
    assert [t.state for t in study.trials()][:2] == ["completed", "failed"]


def test_trials_dataframe_columns_dtypes_and_nan_metrics(server: ServerProcess) -> None:
    study = hpsearch.connect(server.url).create_study(
        notebook_spec(constraints=[{"metric": "latency_ms", "op": "<=", "threshold": 10}])
    )
    fine = study.ask()
    fine.report(1, loss=float("nan"), latency_ms=float("inf"))  # not measured: no 422
    study.tell(fine, {"loss": 0.5, "latency_ms": 5.0})
    slow = study.ask()
    study.tell(slow, {"loss": float("nan"), "latency_ms": 50.0})
    study.tell(study.ask(), failed=RuntimeError("out of memory"))

    assert slow.number == 1
    read = study.trial(1)
    # Not measured: left out of the trial's metrics (NaN in the DataFrame).
    assert read.metrics == {"latency_ms": 50.0} and read.value is None
    df = study.trials_dataframe()
    df = df[df["state"] != "queued"]  # trials the server sampled ahead of claims
    assert list(df.columns) == [
        "number",
        "state",
        "value",
        "params_lr",
        "params_units",
        "params_act",
        "loss",
        "latency_ms",
        "feasible",
        "broken",
        "datetime_start",
        "datetime_complete",
        "error",
        "duration",
    ]
    assert str(df["number"].dtype) == "int64"
    for column in ("value", "params_lr", "loss", "latency_ms"):
        assert str(df[column].dtype) == "float64", column
    assert str(df["params_units"].dtype) == "int64"
    assert str(df["feasible"].dtype) == "boolean"
    for column in ("state", "broken", "error"):
        assert str(df[column].dtype) == "string", column
    assert str(df["datetime_start"].dtype).startswith("datetime64")
    assert list(df["state"]) == ["completed", "completed", "failed"]
    assert math.isnan(df["loss"][1]) and df["value"][0] == 0.5
    assert df["broken"][0] == "" and df["broken"][1] == "latency_ms ≤ 10"
    assert bool(df["feasible"][0]) is True and bool(df["feasible"][1]) is False
    assert df["error"][2] == "RuntimeError: out of memory"
    best = study.best_trial
    assert best is not None and best.number == 0


def test_partial_enqueue_and_extend(
    make_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = make_server(database_url)
    study = hpsearch.connect(server.url).create_study(
        notebook_spec(budget={"max_trials": 2, "parallelism": 2})
    )
    guess = study.enqueue({"lr": 0.01})  # units and act sampled
    assert guess.params["lr"] == 0.01 and set(guess.params) == {"lr", "units", "act"}
    assert study.info["counts"]["max_trials"] == 3  # it added to the budget
    within = study.enqueue({"lr": 0.02, "act": "tanh"}, add_to_budget=False)
    assert study.info["counts"]["max_trials"] == 3
    assert within.params["act"] == "tanh"
    with pytest.raises(hpsearch.client.ApiError, match="unknown parameters"):
        study.enqueue({"momentum": 0.9})

    ran = []
    while True:
        try:
            trial = study.ask(timeout=10)
        except hpsearch.StudyEnded:
            break
        ran.append(trial.params["lr"])
        study.tell(trial, {"loss": trial.params["lr"]})
    assert ran[:2] == [0.01, 0.02] and len(ran) == 3
    assert study.info["state"] == "completed"

    study.extend(2)  # a completed study runs again
    info = study.info
    assert (info["state"], info["counts"]["max_trials"], info["reason"]) == ("running", 5, None)
    study.optimize(lambda trial: {"loss": 1.0})
    assert len(study.trials()) == 5 and study.info["state"] == "completed"


def test_the_notebook_example_runs(server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "examples/notebook.py"],
        cwd=REPO,
        env={**server.env, "HPSEARCH_SERVER": server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "best: study 1 trial" in done.stdout
    assert (
        "<study 1 on" in done.stdout and "completed, 15 trials" in done.stdout
    )  # 12, 1 enqueued, 2 extended


def test_wait_returns_when_the_study_ends(server: ServerProcess) -> None:
    hs = hpsearch.connect(server.url)
    study = hs.create_study(notebook_spec(name="waited"))
    assert hs.load_study("waited").id == study.id
    with pytest.raises(TimeoutError, match="still running"):
        study.wait(timeout=0.1, progress=False)
    elsewhere = threading.Thread(target=study.optimize, args=(lambda trial: {"loss": 1.0},))
    elsewhere.start()
    assert study.wait(timeout=60) == "completed"
    elsewhere.join()
