"""``hpsearch demo``: a server, workers and the example study on SQLite, in one command."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hpsearch.client import Client, wait_until_healthy
from hpsearch.diagnosis import diagnose
from hpsearch.states import ENDED_STUDY, StudyState, TrialState
from hpsearch.study_status import format_status

DEMO_SPEC = Path(__file__).resolve().parent / "examples" / "demo.yaml"


def run_demo(
    *,
    port: int,
    workers: int,
    trials: int | None,
    epochs: int | None,
    directory: str,
    serve: bool,
) -> int:
    root = Path(directory).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": f"sqlite:///{root / 'demo.db'}",
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_HOST": "127.0.0.1",
        "HPSEARCH_ARTIFACT_DIR": str(root / "artifacts"),
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    server_log = open(root / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    try:
        print(f"starting the server on {url} (SQLite at {root / 'demo.db'})", flush=True)
        procs.append(_spawn(["server"], env, server_log))
        wait_until_healthy(url, procs[0], timeout=60)
        client = Client(url, retry_for=30)

        spec = yaml.safe_load(DEMO_SPEC.read_text())
        if trials is not None:
            spec["budget"]["max_trials"] = trials
        if epochs is not None:
            spec["task"]["epochs"] = epochs
        study_id = client.create_study(spec)["id"]
        print(
            f"submitted study {study_id} '{spec['name']}': "
            f"{spec['budget']['max_trials']} trials, {workers} workers",
            flush=True,
        )
        for i in range(workers):
            log = open(root / f"worker-{i}.log", "wb")  # noqa: SIM115
            procs.append(
                _spawn(
                    [
                        "worker",
                        "--server",
                        url,
                        "--study",
                        str(study_id),
                        "--worker-id",
                        f"demo-worker-{i}",
                    ],
                    env,
                    log,
                )
            )
        final = follow(client, study_id, procs[1:])
        _print_regions(client, study_id)
        test = wait_for_test_evaluation(client, study_id, procs[1:], timeout=120)
        _print_result(client, final, test)
        if serve:
            print(f"\nResults: {url}/studies/{study_id}  (serving until Ctrl-C)", flush=True)
            _wait_for_interrupt(procs[0])
        else:
            print(f"\nResults were at {url}/studies/{study_id}", flush=True)
        return 0 if final["state"] == StudyState.COMPLETED else 1
    finally:
        for proc in reversed(procs):
            _stop(proc)
        server_log.close()


def _spawn(args: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def follow(
    client: Client,
    study_id: int,
    workers: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    """Prints one progress line whenever the study changes; returns it once it has ended."""
    last = ""
    started = time.monotonic()
    while True:
        study = client.study(study_id)
        c = study["counts"]
        ended = c["completed"] + c["pruned"] + c["failed"]
        best = study["best"]
        best_text = (
            f"best {best['value']:.4f} (trial {best['number']})"
            if best
            else "no feasible trial yet"
        )
        line = (
            f"[{time.monotonic() - started:5.0f}s] {ended}/{c['max_trials']} trials ended, "
            f"{c['running']} running, {c['failed']} failed · {best_text}"
        )
        if line.split("] ", 1)[1] != last:
            print(line, flush=True)
            last = line.split("] ", 1)[1]
        if study["state"] in ENDED_STUDY:
            return study
        if all(w.poll() is not None for w in workers):
            print("all workers exited before the study ended; see their logs", flush=True)
            return study
        time.sleep(0.5)


def wait_for_test_evaluation(
    client: Client, study_id: int, workers: list[subprocess.Popen[bytes]], timeout: float
) -> dict[str, float] | None:
    """The chosen trial's test metrics, once a worker has evaluated them (spec evaluate_test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation = client.final_evaluation(study_id)
        if evaluation is None or evaluation["state"] == TrialState.FAILED:
            return None
        if evaluation["state"] == TrialState.COMPLETED:
            metrics: dict[str, float] | None = client.trial(evaluation["trial_id"])["test_metrics"]
            return metrics
        if all(w.poll() is not None for w in workers):
            return None
        time.sleep(0.5)
    return None


def _print_regions(client: Client, study_id: int) -> None:
    rounds = client.regions(study_id)["rounds"]
    if not rounds:
        return
    print("\ncoarse to fine: the region each round sampled")
    for r in rounds:
        spans = []
        for name, box in r["params"].items():
            if box["values"] is not None:
                lo, hi = box["values"]
                spans.append(f"{name} [{_g(lo)}, {_g(hi)}]")
            else:
                spans.append(f"{name} {box['choices']}")
        print(f"  round {r['round']}: " + ", ".join(spans))


def _g(v: float) -> str:
    return f"{v:.3g}"


def _print_result(client: Client, study: dict[str, Any], test: dict[str, float] | None) -> None:
    print()
    print(format_status(study, client.trials(study["id"], order="rank", limit=5)))
    best = study.get("best")
    if not best:
        return
    m = best["metrics"]
    reference = study["spec"].get("reference_error") or 0.0
    test_error = test.get("test_error") if test else None
    if "train_error" in m and "dev_error" in m:
        d = diagnose(
            m["train_error"], m["dev_error"], reference, m.get("train_dev_error"), test_error
        )
        print(
            f"\nbias/variance of the best trial (human-level error {reference:.1%}): "
            f"train error {d.train_error:.2%}, dev error {d.dev_error:.2%}"
            + (
                f", test error {test_error:.2%} (evaluated once, on the chosen trial)"
                if test_error is not None
                else ""
            )
        )
        print(f"  {d.summary()}")


def _wait_for_interrupt(server: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        server.wait()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
