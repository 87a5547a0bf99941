"""Mistakes are refused or reported at once, budgets are not burned on trials that cannot
count, and workers take only what they can run and end by themselves: through the CLI and
REST, with real server and worker processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hpsearch.client import ApiError
from tests.conftest import ServerProcess, digits_spec, free_port, wait_for
from tests.integration.test_worker_custom import MODULE, custom_spec, run_worker, worker_env


def run_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_typo_study_is_refused_at_submit_with_the_suggestion(
    server: ServerProcess, tmp_path: Path
) -> None:
    spec = digits_spec(objective={"metric": "dev_acc", "direction": "maximize"})
    spec["space"]["activation"] = {"type": "categorical", "choices": ["relu", "gelu"]}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = run_cli(server, "submit", str(path), "--server", server.url)
    assert done.returncode == 2
    # Both errors in one round, each on the line of its key.
    assert f"{path}: line 3: objective.metric: 'dev_acc' is not reported" in done.stderr
    assert "(did you mean 'dev_accuracy'?)" in done.stderr
    assert "space.activation.choices.1: activation 'gelu' is not one of" in done.stderr
    with server.client() as client:
        with pytest.raises(ApiError) as refused:
            client.create_study(spec)
        assert client.studies() == []
    assert refused.value.status == 422
    errors = {e["field"]: e["message"] for e in refused.value.body["errors"]}
    assert "(did you mean 'dev_accuracy'?)" in errors["objective.metric"]
    # User errors are one line, never a traceback.
    missing = run_cli(server, "submit", str(tmp_path / "missing.yaml"))
    bad_url = run_cli(server, "status", "1", "--server", "ftp://x")
    for done in (missing, bad_url):
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    no_file = f"error: {tmp_path / 'missing.yaml'}: No such file or directory"
    assert missing.stderr.strip() == no_file
    assert "write http://HOST:PORT" in bad_url.stderr


def test_trials_that_cannot_count_fail_with_the_reason_or_diverge(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    spec = custom_spec("outcome", trials=4)
    outcomes = ["typo", "nan", "good", "silent"]
    spec["space"] = {"outcome": {"type": "categorical", "choices": outcomes}}
    spec["sampler"] = {"kind": "grid"}
    with server.client() as client:
        study = client.create_study(spec)
        sid = str(study["id"])
        done = run_worker(server, "--study", sid, "--allow", f"{MODULE}:outcome")
        trials = {t["params"]["outcome"]: t for t in client.trials(study["id"])}
        ranked = [t["params"]["outcome"] for t in client.trials(study["id"], order="rank")]
        final = client.study(study["id"])
    assert done.returncode == 0, done.stderr
    never = "objective dev_accuracy was never reported; reported:"
    assert (trials["typo"]["state"], trials["typo"]["error"]) == ("failed", f"{never} dev_acc")
    assert (trials["silent"]["state"], trials["silent"]["error"]) == ("failed", f"{never} nothing")
    assert f"trial {trials['typo']['number']} failed: {never} dev_acc" in done.stdout
    nan = trials["nan"]
    assert (nan["state"], nan["value"], nan["diverged"]) == ("completed", None, True)
    assert not trials["good"]["diverged"]
    assert ranked[:2] == ["good", "nan"]  # diverged: below every finite value
    assert final["state"] == "completed" and final["best"]["params"]["outcome"] == "good"
    status = run_cli(server, "status", sid, "--server", server.url)
    assert re.search(rf"#{nan['number']} +completed +diverged", status.stdout), status.stdout


def test_a_study_whose_first_trials_fail_pauses_itself_and_batch_workers_exit(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    allow = ("--allow", f"{MODULE}:crash")
    with server.client() as client:
        study = client.create_study(custom_spec("crash", trials=10))
        crashed = run_worker(server, *allow, "--idle-exit", "2")
        paused = client.study(study["id"])
        started = time.monotonic()
        idle = run_worker(server, *allow, "--idle-exit", "2")  # the only study is paused
        took = time.monotonic() - started
    assert paused["state"] == "paused" and paused["counts"]["failed"] == 3, paused
    reason = (
        "the first 3 trials all failed (trial 2: ZeroDivisionError: the user's training code "
        "divided by zero); fix the cause, then resume"
    )
    assert paused["reason"] == reason
    status = run_cli(server, "status", str(study["id"]), "--server", server.url)
    assert f": paused ({reason})" in status.stdout
    for done in (crashed, idle):
        assert done.returncode == 0, done.stderr
        assert f"study {study['id']} is paused (the first 3 trials all failed" in done.stdout
        assert "exiting (--idle-exit)" in done.stdout
    assert took < 2 + 5


def test_workers_take_only_the_studies_whose_requirements_they_meet(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    allow = ("--allow", f"{MODULE}:curve", "--idle-exit", "2")
    with server.client() as client:
        gpu = client.create_study(custom_spec("curve", trials=2, requires={"device": "cuda"}))
        lab = {"labels": {"site": "lab2"}}
        lab2 = client.create_study(custom_spec("curve", trials=2, requires=lab))
        elsewhere = run_worker(server, *allow, "--label", "site=lab1")
        untouched = client.trials(gpu["id"]) + client.trials(lab2["id"])
        at_lab2 = run_worker(server, *allow, "--label", "site=lab2")
        lab2_states = [t["state"] for t in client.trials(lab2["id"])]
        gpu_trials = client.trials(gpu["id"])
        # No live worker has a GPU: REST, CLI and web say what the study waits for.
        assert client.study(gpu["id"])["waiting_for"] == "device cuda"
        assert client.study(lab2["id"])["waiting_for"] is None  # the lab2 worker was heard
    status = run_cli(server, "status", str(gpu["id"]), "--server", server.url)
    assert "  waiting for a worker with device cuda" in status.stdout
    page = httpx.get(f"{server.url}/studies/{gpu['id']}").text
    assert "waiting for a worker with device cuda" in page
    assert elsewhere.returncode == at_lab2.returncode == 0
    assert untouched == [] and gpu_trials == []  # no CPU worker ever claimed the cuda study
    assert lab2_states == ["completed", "completed"]
    needs_gpu = f"study {gpu['id']} needs a worker with 1 GPU (device cuda)"
    assert f"passing over study {gpu['id']}: it needs a worker with 1 GPU" in elsewhere.stdout
    assert f"{needs_gpu}; study {lab2['id']} needs a worker with label site=lab2" in (
        elsewhere.stdout
    )
    assert needs_gpu in at_lab2.stdout


def _background_worker(url: str, env: dict[str, str], log: Path, *args: str) -> Any:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "worker", "--server", url, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_sigterm_ends_an_idle_or_retrying_worker_at_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    idle_log, retrying_log = tmp_path / "idle.log", tmp_path / "retrying.log"
    idle = _background_worker(server.url, server.env, idle_log, "--keep-alive")
    nowhere = f"http://127.0.0.1:{free_port()}"
    retrying = _background_worker(nowhere, server.env, retrying_log)
    try:
        # The server has seen the idle one claim (and find nothing).
        wait_for(lambda: httpx.get(f"{server.url}/api/v1/workers").json(), 30, "a claim")
        # An unreachable server is said at once, not after minutes of silence.
        wait_for(lambda: "retrying for" in retrying_log.read_text(), 15, "'retrying for'")
        for proc in (idle, retrying):
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 2
    finally:
        for proc in (idle, retrying):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert f"{nowhere} unreachable" in retrying_log.read_text()


def test_worker_command_line_mistakes_are_answered(server: ServerProcess) -> None:
    unknown = run_worker(server, "--study", "999")
    assert unknown.returncode == 2
    assert "error: --study 999: study 999 does not exist" in unknown.stderr
    # The API's own prefix, and no scheme: both what the user meant.
    address = server.url.removeprefix("http://") + "/api/v1/"
    done = run_worker(server, "--server", address, "--idle-exit", "0")
    assert done.returncode == 0, done.stderr
    assert f"server {server.url}" in done.stdout and "no study has work left" in done.stdout


def test_a_setup_error_hands_the_trial_back_and_the_worker_passes_the_study_over(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    allow = ("--allow", f"{MODULE}:missing_data", "--idle-exit", "1")
    with server.client() as client:
        study = client.create_study(custom_spec("missing_data", trials=3))
        done = run_worker(server, *allow)
        (trial,) = client.trials(study["id"])
        events = client.trial(trial["id"])["events"]
        counts = client.study(study["id"])["counts"]
    assert done.returncode == 0, done.stderr
    # Handed back, not failed: a worker that has the data may run it.
    assert trial["state"] == "queued" and counts["failed"] == 0
    assert events[-1]["kind"] == "released"
    assert "setup error on worker" in events[-1]["detail"]
    assert "a file is missing on this worker: dataset folder" in events[-1]["detail"]
    assert f"this worker claims no more of study {study['id']}" in done.stdout
    assert f"study {study['id']} needs a worker with a setup that works" in done.stdout


def test_a_worker_whose_last_trials_fail_where_others_succeed_stops_and_shows_unhealthy(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(**worker_env(tmp_path))
    allow = ("--allow", f"{MODULE}:broken_here", "--worker-id")
    with server.client() as client:
        study = client.create_study(custom_spec("broken_here", trials=10))
        healthy = run_worker(server, *allow, "healthy", "--max-trials", "1")
        command = [sys.executable, "-m", "hpsearch.cli", "worker", "--server", server.url]
        broken = subprocess.run(
            [*command, *allow, "broken"],
            env={**server.env, "HPSEARCH_TEST_BROKEN": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        workers = {w["id"]: w for w in client._list("GET", "/workers")}
        final = client.study(study["id"])
    assert healthy.returncode == 0 and broken.returncode == 1, broken.stdout
    assert final["state"] == "running" and final["counts"]["failed"] == 3  # not paused
    reason = workers["broken"]["unhealthy"]
    assert reason.startswith("its last 3 trials failed, of studies whose trials do complete")
    assert reason.endswith("RuntimeError: CUDA error: an illegal memory access was encountered)")
    assert workers["healthy"]["unhealthy"] is None
    assert f"this worker is unhealthy ({reason}): it stops claiming" in broken.stdout
    page = httpx.get(f"{server.url}/workers").text
    assert "unhealthy: its last 3 trials failed" in page
