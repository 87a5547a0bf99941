"""Every study command of the CLI, run as a user runs it (a subprocess) against one real
server: studies, pause | resume | stop | delete, enqueue, extend, trials, logs, export, best
(with the model download), status; --json; exit codes 0 / 1 / 2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hpsearch
from tests.conftest import ServerProcess, digits_spec
from tests.integration.test_study_handle import notebook_spec


def cli(server: ServerProcess, *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", *args],
        env={**server.env, "HPSEARCH_SERVER": server.url},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_every_study_command(server: ServerProcess, tmp_path: Path) -> None:
    assert "no studies" in cli(server, "studies")
    # A built-in trainer's study, trained by a real worker: it leaves a model to download.
    trained_spec = digits_spec(
        budget={"max_trials": 1, "parallelism": 1},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 1},
    )
    hs = hpsearch.connect(server.url)
    trained = hs.create_study(trained_spec)
    worker = server.start_worker("--study", str(trained.id))

    # Meanwhile, a study whose trials run here (no worker may run its entry point).
    study = hs.create_study(
        notebook_spec(constraints=[{"metric": "latency_ms", "op": "<=", "threshold": 10}])
    )
    s = str(study.id)
    out = cli(server, "enqueue", s, "lr=0.01", "act=tanh")
    assert f"study {s} trial 0 queued (added to the budget, now 5 trials)" in out
    assert "lr=0.01" in out and "act=tanh" in out
    assert "expected NAME=VALUE" in cli(server, "enqueue", s, "lr", code=2)
    assert "unknown parameters ['momentum']" in cli(server, "enqueue", s, "momentum=1", code=1)
    assert "now 5 trials" in cli(server, "enqueue", s, "lr=0.02", "--within-budget")
    assert ": paused" in cli(server, "pause", s)
    assert ": running" in cli(server, "resume", s)

    for metrics in ({"loss": 0.5, "latency_ms": 5.0}, {"loss": 0.2, "latency_ms": 50.0}):
        study.tell(study.ask(), metrics)
    study.tell(study.ask(), failed=RuntimeError("CUDA out of memory"))
    table = cli(server, "trials", s)
    lines = table.splitlines()
    assert lines[2].split()[:4] == ["1", "0", "completed", "0.5"]  # feasible first
    assert "met" in lines[2]
    assert "broke latency_ms ≤ 10" in lines[3]
    assert "error: RuntimeError: CUDA out of memory" in table
    rows = json.loads(cli(server, "trials", s, "--json"))
    assert [r["number"] for r in rows[:2]] == [0, 1]
    assert rows[1]["broken"] == ["latency_ms ≤ 10"]
    assert rows[0]["web_url"] == f"{server.url}/studies/{s}/trials/0"

    exported = list(csv.DictReader(io.StringIO(cli(server, "export", s, "--format", "csv"))))
    assert [r["state"] for r in exported[:3]] == ["completed", "completed", "failed"]
    assert exported[1]["broken"] == "latency_ms ≤ 10" and exported[0]["params_lr"] == "0.01"
    assert exported[2]["error"] == "RuntimeError: CUDA out of memory"
    target = tmp_path / "trials.json"
    assert "trials written to" in cli(server, "export", s, "--format", "json", "-o", str(target))
    assert json.loads(target.read_text())[0]["params"]["lr"] == 0.01

    assert ": stopped" in cli(server, "stop", s)
    assert "cannot be extended" in cli(server, "extend", s, "2", code=1)

    # extend: a completed study runs again.
    done = hs.create_study(notebook_spec(name="done", budget={"max_trials": 1, "parallelism": 1}))
    done.optimize(lambda trial: {"loss": 1.0})
    assert done.info["state"] == "completed"
    assert "3 trials, running" in cli(server, "extend", str(done.id), "2")

    listed = json.loads(cli(server, "studies", "--json"))
    assert [x["id"] for x in listed] == [done.id, study.id, trained.id]
    assert "stopped" in cli(server, "studies")

    assert worker.wait(timeout=180) == 0
    t = str(trained.id)
    model = tmp_path / "model.pt"
    out = cli(server, "best", t, "--download", str(model))
    assert f"study {t} trial 0: dev_accuracy = " in out and "checkpoint written" in out
    assert model.stat().st_size > 0
    best: dict[str, Any] = json.loads(cli(server, "best", t, "--json"))
    assert best["number"] == 0 and best["web_url"].endswith(f"/studies/{t}/trials/0")
    status = cli(server, "status", t)
    assert f"web: {server.url}/studies/{t}" in status and f"/studies/{t}/trials/0" in status
    cli(server, "logs", f"{t}/0")
    assert json.loads(cli(server, "logs", f"{t}/0", "--json"))["state"] == "completed"
    assert f"study {t} has no trial 7" in cli(server, "logs", f"{t}/7", code=1)
    assert "expected STUDY/NUMBER" in cli(server, "logs", "x/1", code=2)

    # The trained model, rebuilt in one call.
    import torch

    rebuilt = hs.load_study(trained.id).load_model()
    assert isinstance(rebuilt, torch.nn.Module) and not rebuilt.training

    assert "add --yes" in cli(server, "delete", str(done.id), code=2)
    assert f"study {done.id} deleted" in cli(server, "delete", str(done.id), "--yes")
    assert "does not exist" in cli(server, "pause", str(done.id), code=1)
    assert "exit codes: 0 ok, 1 error" in cli(server, "--help")
    assert "invalid choice" in cli(server, "frobnicate", code=2)
