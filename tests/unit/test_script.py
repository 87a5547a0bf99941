"""hpsearch.script: a script's helper that works with and without a worker around it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROGRAM = """
import os, signal, sys
from hpsearch import script
p = script.params({"lr": 0.5, "depth": 2})
print("params", p["lr"], p["depth"], script.checkpoint_dir(), flush=True)
print("stop?", script.report(1, dev_accuracy=0.5), flush=True)
os.kill(os.getpid(), signal.SIGTERM)
print("stop?", script.report(2, dev_accuracy=float("nan")), flush=True)
"""


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_outside_hpsearch_it_prints_and_never_asks_to_stop() -> None:
    done = run({})
    assert done.returncode == -signal.SIGTERM  # SIGTERM kept its usual meaning
    lines = done.stdout.splitlines()
    assert lines[0] == "params 0.5 2 None"
    assert json.loads(lines[1]) == {"step": 1, "dev_accuracy": 0.5}
    assert lines[2] == "stop? False"


def test_under_hpsearch_sigterm_turns_into_a_stop_at_the_next_report(tmp_path: Path) -> None:
    done = run(
        {
            "HPSEARCH_TRIAL_ID": "4",
            "HPSEARCH_PARAMS": json.dumps({"lr": 0.01}),
            "HPSEARCH_CHECKPOINT_DIR": str(tmp_path),
        }
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"params 0.01 2 {tmp_path}"
    assert lines[2] == "stop? False"
    assert lines[3] == '{"step": 2, "dev_accuracy": NaN}'
    assert lines[4] == "stop? True"
