"""Trainer ``command``: a user's program run as it is, by real workers against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hpsearch.client import Client
from tests.conftest import REPO, ServerProcess, wait_for
from tests.integration.test_worker_custom import MODULE, run_worker, worker_env

PROGRAMS = Path(__file__).parent / "programs"
STEPS = [sys.executable, str(PROGRAMS / "steps.py")]
ALLOW_STEPS = ["--allow-command", f"{sys.executable} {PROGRAMS / 'steps.py'}"]


def command_spec(
    *args: str, space: dict[str, Any] | None = None, trials: int = 1, **task: Any
) -> dict[str, Any]:
    """A study whose trials run ``steps.py`` with ``args`` (``{quality}`` is searched)."""
    return {
        "name": "command",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": space or {"quality": {"type": "categorical", "choices": [1.0]}},
        "sampler": {"kind": "random", "seed": 0},
        "budget": {"max_trials": trials, "parallelism": 1, "max_attempts": 3},
        "task": {"trainer": "command", "command": [*STEPS, *args], "epochs": 3, **task},
    }


def finished(client: Client, trial_id: int) -> dict[str, Any] | None:
    trial = client.trial(trial_id)
    return trial if trial["state"] not in ("queued", "running") else None


def utc(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


@pytest.mark.slow
def test_an_unmodified_script_is_searched_by_two_workers(
    make_server: Callable[..., ServerProcess],
) -> None:
    """examples/command-study.yaml as the README runs it: two workers, the script untouched."""
    bin_dir = str(Path(sys.executable).parent)  # `python` is the environment's, as after activate
    server = make_server(PATH=os.pathsep.join([bin_dir, os.environ["PATH"]]))
    spec = yaml.safe_load((REPO / "examples" / "command-study.yaml").read_text())
    spec["budget"] = {"max_trials": 4, "parallelism": 2}
    spec["task"]["epochs"] = 3
    assert (
        "hpsearch" not in (REPO / "examples" / "command" / "train.py").read_text().split('"""')[2]
    ), "the example script must not import hpsearch"
    with server.client() as client:
        study = client.create_study(spec)
        workers = [
            server.start_worker("--allow-command", "python train.py", log_name=f"w{i}")
            for i in range(2)
        ]
        for w in workers:
            assert w.wait(timeout=240) == 0
        trials = client.trials(study["id"])
        logs = client.logs(trials[0]["id"])
        best = client.best(study["id"])
    assert len(trials) == 4
    assert {t["state"] for t in trials} <= {"completed", "pruned"}, trials
    assert len({t["worker_id"] for t in trials}) == 2, "both workers ran trials"
    assert all(t["metrics"]["dev_accuracy"] > 0.1 and t["last_step"] >= 1 for t in trials)
    assert best is not None and best["metrics"]["latency_ms"] >= 0
    assert '{"step": 1, "train_accuracy":' in logs["text"]


@pytest.mark.slow
def test_values_are_single_arguments_and_a_command_not_allowed_never_starts(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payloads = ["; touch " + str(marker), f"$(touch {marker})", "a b", "`id`"]
    echo = [sys.executable, str(PROGRAMS / "echo_argv.py")]
    server = make_server()
    with server.client() as client:
        study = client.create_study(
            {
                **command_spec(),
                "space": {"v": {"type": "categorical", "choices": payloads}},
                "sampler": {"kind": "grid"},
                "budget": {"max_trials": len(payloads), "parallelism": 1},
                "task": {"trainer": "command", "command": [*echo, "--value", "{v}", "x{v}y"]},
            }
        )
        # A worker whose prefix is another program's is never given these trials: bound to
        # the study, it says what to allow and exits.
        refused = run_worker(server, "--study", str(study["id"]), *ALLOW_STEPS)
        assert refused.returncode == 2, refused.stderr
        assert "--allow-command" in refused.stdout and "echo_argv.py" in refused.stdout
        assert client.trials(study["id"]) == []
        allowed = run_worker(server, "--study", str(study["id"]), "--allow-command", " ".join(echo))
        assert allowed.returncode == 0, allowed.stderr
        trials = client.trials(study["id"])
        argvs = {}
        for t in trials:
            text = client.logs(t["id"])["text"]
            (line,) = [x for x in text.splitlines() if x.startswith("argv: ")]
            argvs[t["params"]["v"]] = json.loads(line.removeprefix("argv: "))
    assert all(t["state"] == "completed" for t in trials)
    for value in payloads:
        assert argvs[value] == ["--value", value, f"x{value}y"]
    assert not marker.exists(), "a value was run by a shell"


@pytest.mark.slow
def test_a_pruned_program_that_ignores_sigterm_is_killed_after_its_grace(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """ASHA prunes the second trial at step 1; its program ignores SIGTERM, so SIGKILL ends
    it ``grace_seconds`` later (it would otherwise run 20 s), pruned at step 1."""
    pidfile = tmp_path / "pid"
    args = ["--quality", "{quality}", "--steps", "{steps}", "--pause", "0.05"]
    spec = command_spec(
        *args, "--mode", "stubborn", "--pidfile", str(pidfile), grace_seconds=1, epochs=400
    )
    spec["space"] = {
        "quality": {"type": "categorical", "choices": [1.0, 0.1]},
        "steps": {"type": "categorical", "choices": [1, 400]},
    }
    spec["budget"]["max_trials"] = 2
    spec["pruner"] = {"kind": "asha", "min_resource": 1, "reduction_factor": 2}
    server = make_server()
    with server.client() as client:
        study = client.create_study(spec)
        client.enqueue(study["id"], {"quality": 1.0, "steps": 1})  # sets rung 1's bar
        client.enqueue(study["id"], {"quality": 0.1, "steps": 400})
        done = run_worker(server, "--study", str(study["id"]), "--max-trials", "2", *ALLOW_STEPS)
        assert done.returncode == 0, done.stderr
        first, second = sorted(client.trials(study["id"]), key=lambda t: t["number"])[:2]
        second = client.trial(second["id"])
        log = client.logs(second["id"])["text"]
    assert first["state"] == "completed"
    assert second["state"] == "pruned" and second["last_step"] == 1
    assert [p["step"] for p in second["intermediates"]] == [1]
    started = float(log.split("starting at step 1 at ")[1].split()[0])
    assert utc(second["finished_at"]) - started < 1 + 3  # grace, and the first step's pause
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_a_user_stop_ends_a_script_cleanly_at_its_last_step(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    spec = command_spec("--steps", "400", "--pause", "0.05", "--mode", "script", epochs=400)
    with server.client() as client:
        study = client.create_study(spec)
        worker = server.start_worker("--study", str(study["id"]), *ALLOW_STEPS)
        wait_for(lambda: (client.trials(study["id"]) or [{}])[0].get("last_step"), 60, "step 1")
        (trial,) = client.trials(study["id"])
        client.stop_trial(trial["id"])
        asked = time.time()
        ended = wait_for(lambda: finished(client, trial["id"]), 30, "the trial to end")
        assert worker.wait(timeout=30) == 0
        log = client.logs(trial["id"])["text"]
    assert utc(ended["finished_at"]) - asked < 5  # well inside the default 30 s grace
    assert ended["state"] == "pruned"
    assert ended["last_step"] == max(p["step"] for p in ended["intermediates"])
    # The script heard SIGTERM through hpsearch.script and returned by itself; a step it
    # printed after the decision is log, not a report.
    told = int(log.split("told to stop after step ")[1].split()[0])
    assert told >= ended["last_step"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["command", "entry_point"])
def test_a_killed_workers_trial_resumes_from_its_checkpoint(
    make_server: Callable[..., ServerProcess], tmp_path: Path, kind: str
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="2", **worker_env(tmp_path))
    if kind == "command":
        spec = command_spec("--steps", "5", "--hold-at", "3", epochs=5)
        allow = ALLOW_STEPS
    else:
        spec = command_spec(epochs=5)
        spec["space"] = {"hold_at": {"type": "categorical", "choices": [3]}}
        spec["task"] = {"trainer": "custom", "entry_point": f"{MODULE}:checkpointed", "epochs": 5}
        allow = ["--allow", f"{MODULE}:checkpointed"]
    with server.client() as client:
        study = client.create_study(spec)
        first = server.start_worker("--study", str(study["id"]), "--heartbeat", "0.5", *allow)
        # A program's checkpoint is its folder as it was when a step's line was read: a fast
        # program may be ahead of that line, so its label is the step read, not the state in
        # it. Held at step 3, a checkpoint of any step holds a state past step 1.
        checkpointed = 3 if kind == "entry_point" else 1
        held = wait_for(
            lambda: [
                t
                for t in client.trials(study["id"])
                if (t["checkpoint_step"] or 0) >= checkpointed and (t["last_step"] or 0) >= 3
            ],
            60,
            "step 3 and a checkpoint",
        )
        first.send_signal(signal.SIGKILL)  # no goodbye: the lease must run out
        first.wait(timeout=10)
        second = server.start_worker("--study", str(study["id"]), "--heartbeat", "0.5", *allow)
        assert second.wait(timeout=120) == 0
        trial = client.trial(held[0]["id"])
    assert trial["state"] == "completed" and trial["attempt"] == 2, trial["error"]
    resumed = [p["step"] for p in trial["intermediates"] if p["attempt"] == 2]
    assert resumed and resumed[0] > 1, trial["intermediates"]
    assert resumed == list(range(resumed[0], 6))


@pytest.mark.slow
def test_a_failed_programs_traceback_is_in_its_logs_on_the_page_and_the_cli(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    with server.client() as client:
        study = client.create_study(command_spec("--mode", "crash"))
        done = run_worker(server, "--study", str(study["id"]), *ALLOW_STEPS)
        assert done.returncode == 0, done.stderr
        (trial,) = client.trials(study["id"])
    assert trial["state"] == "failed"
    assert "exited with code 1" in trial["error"]
    assert trial["error"].rstrip().endswith("ZeroDivisionError: division by zero")
    cli = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "logs", str(trial["id"]), "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env,
    )
    assert cli.returncode == 0, cli.stderr
    assert '{"step": 1, "dev_accuracy": 0.3333333333333333}' in cli.stdout
    assert "Traceback (most recent call last)" in cli.stdout
    assert "ZeroDivisionError: division by zero" in cli.stdout
    page = httpx.get(f"{server.url}/trials/{trial['id']}").text
    assert "Traceback (most recent call last)" in page.split('id="trial-log"')[1]

    # A program that exits 0 without ever printing the objective fails too, saying so.
    with server.client() as client:
        spec = command_spec()
        spec["objective"]["metric"] = "dev_f1"
        study = client.create_study(spec)
        done = run_worker(server, "--study", str(study["id"]), *ALLOW_STEPS)
        assert done.returncode == 0, done.stderr
        (trial,) = client.trials(study["id"])
    assert trial["state"] == "failed"
    assert trial["error"].startswith("objective dev_f1 was never reported; reported: ")
    assert "dev_accuracy" in trial["error"] and "latency_ms" in trial["error"]
