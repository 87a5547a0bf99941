"""A real server, two real worker processes, real PyTorch training on digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.conftest import ServerProcess, digits_spec


def test_two_workers_finish_a_six_trial_study(server: ServerProcess, tmp_path: Path) -> None:
    spec = digits_spec(
        budget={"max_trials": 6, "parallelism": 2},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 2},
    )
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    submitted = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "submit", str(spec_file), "--server", server.url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{server.url}/studies/1" in submitted.stdout
    workers = [server.start_worker("--study", "1", "--worker-id", f"w{i}") for i in range(2)]
    for w in workers:
        # Workers exit by themselves once the study is done.
        assert w.wait(timeout=240) == 0

    api = f"{server.url}/api/v1"
    study = httpx.get(f"{api}/studies/1").json()
    assert study["state"] == "completed"
    assert study["counts"]["completed"] == 6
    trials = httpx.get(f"{api}/studies/1/trials").json()
    assert len(trials) == 6
    for t in trials:
        assert t["state"] == "completed"
        assert {
            "train_accuracy",
            "dev_accuracy",
            "train_error",
            "dev_error",
            "latency_ms",
            "n_params",
        } <= t["metrics"].keys()
        assert t["attempt"] == 1  # no trial ran twice
        detail = httpx.get(f"{api}/trials/{t['id']}").json()
        assert [e["kind"] for e in detail["events"]].count("claimed") == 1
        assert [p["step"] for p in detail["intermediates"]] == [1, 2]
    assert {t["worker_id"] for t in trials} == {"w0", "w1"}
    # Each said goodbye on its way out: the workers page shows them exited, not lost.
    listed = {w["id"]: w for w in httpx.get(f"{api}/workers").json()}
    assert listed["w0"]["exited_at"] is not None and listed["w1"]["exited_at"] is not None
    best = httpx.get(f"{api}/studies/1/best").json()
    assert best["feasible"] is True
    feasible = [t for t in trials if t["feasible"]]
    assert best["value"] == max(t["value"] for t in feasible)

    status = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "status", "1", "--server", server.url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "completed" in status.stdout and f"trial {best['number']}" in status.stdout

    page = httpx.get(f"{server.url}/studies/1")
    assert page.status_code == 200
    assert "maximize dev_accuracy subject to latency_ms ≤ 100" in page.text
    assert 'class="best" data-trial="' + str(best["number"]) + '"' in page.text
