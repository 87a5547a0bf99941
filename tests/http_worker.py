"""A worker that speaks the worker protocol over HTTP (claim, report, complete, fail) without
training anything, and a study built with it that holds every trial state: completed
(feasible and infeasible), pruned, failed and running. Fast, no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import ServerProcess, digits_spec


@dataclass
class BuiltStudy:
    id: int
    best_number: int
    infeasible_numbers: list[int]
    pruned_number: int
    failed_number: int
    running_number: int
    trial_ids: dict[int, int]  # number -> id
    worker: WorkerOverHttp
    running: dict[str, Any]  # the running trial's claim, to finish it later


def _curve(step: int, top: float, rate: float) -> dict[str, float]:
    dev = top * (1 - math.exp(-rate * step))
    train = min(0.995, dev + 0.015 * step)
    return {
        "dev_accuracy": dev,
        "train_accuracy": train,
        "dev_loss": 1.5 * (1 - dev),
        "train_loss": 1.5 * (1 - train),
    }


class WorkerOverHttp:
    """Speaks the worker protocol the way workers/loop.py does, without training anything."""

    def __init__(self, server: ServerProcess, worker_id: str = "e2e-worker") -> None:
        self.api = f"{server.url}/api/v1"
        self.worker_id = worker_id

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json()

    def claim(self, study_id: int) -> dict[str, Any]:
        body = {"worker_id": self.worker_id, "host": "e2e-host", "devices": ["cpu"]}
        trial = self.post("/claims", {**body, "study_id": study_id})["trial"]
        assert trial is not None
        return dict(trial)

    def upload_checkpoint(self, trial: dict[str, Any], step: int, data: bytes) -> Any:
        r = httpx.put(
            f"{self.api}/trials/{trial['id']}/checkpoint",
            params={"worker_id": self.worker_id, "attempt": trial["attempt"], "step": step},
            content=data,
            timeout=30,
        )
        assert r.status_code < 300, r.text
        return r.json()

    def run(
        self,
        trial: dict[str, Any],
        steps: int,
        top: float,
        end: str = "complete",
        metrics: dict[str, float] | None = None,
    ) -> None:
        lease = {"worker_id": self.worker_id, "attempt": trial["attempt"]}
        tid = trial["id"]
        for step in range(1, steps + 1):
            self.post(
                f"/trials/{tid}/intermediate",
                {**lease, "step": step, "metrics": _curve(step, top, 0.9)},
            )
        if end == "fail":
            self.post(f"/trials/{tid}/fail", {**lease, "error": FAKE_TRACEBACK})
        elif end in ("complete", "pruned"):
            final = {**_curve(steps, top, 0.9), **(metrics or {})}
            final.setdefault("train_error", 1 - final["train_accuracy"])
            final.setdefault("dev_error", 1 - final["dev_accuracy"])
            self.post(
                f"/trials/{tid}/complete", {**lease, "metrics": final, "pruned": end == "pruned"}
            )


FAKE_TRACEBACK = """Traceback (most recent call last):
  File "workers/training/run.py", line 120, in train_trial
    loss = step(model, batch)
RuntimeError: training diverged in epoch 3 at lr=0.9 ({'train_loss': nan})
"""


def build_study(
    server: ServerProcess, reference_error: float | None = 0.02, **spec_overrides: Any
) -> BuiltStudy:
    """A running study with completed (feasible and infeasible), pruned, failed and running
    trials. The highest dev_accuracy belongs to an infeasible trial (latency 400 ms)."""
    spec = digits_spec(budget={"max_trials": 20, "parallelism": 1}, **spec_overrides)
    spec["constraints"] = [{"metric": "latency_ms", "op": "<=", "threshold": 100}]
    if reference_error is not None:
        spec["reference_error"] = reference_error
    r = httpx.post(f"{server.url}/api/v1/studies", json=spec, timeout=30)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    w = WorkerOverHttp(server)
    # (top dev accuracy, latency ms, how it ends)
    plan: list[tuple[float, float, str]] = [
        (0.90, 40, "complete"),
        (0.97, 400, "complete"),  # best score, but infeasible
        (0.80, 60, "complete"),
        (0.55, 30, "pruned"),
        (0.93, 80, "complete"),  # the best feasible trial
        (0.00, 0, "fail"),
        (0.86, 70, "complete"),
        (0.95, 250, "complete"),  # infeasible
        (0.70, 20, "complete"),
        (0.88, 90, "complete"),
        (0.75, 55, "complete"),
        (0.82, 45, "complete"),
    ]
    ids: dict[int, int] = {}
    for top, latency, end in plan:
        trial = w.claim(sid)
        ids[trial["number"]] = trial["id"]
        steps = 2 if end in ("pruned", "fail") else 6
        w.run(trial, steps, top, end, {"latency_ms": latency, "n_params": 1000 + 10 * latency})
    running = w.claim(sid)
    ids[running["number"]] = running["id"]
    w.run(running, 2, 0.9, end="")
    return BuiltStudy(
        id=sid,
        best_number=4,
        infeasible_numbers=[1, 7],
        pruned_number=3,
        failed_number=5,
        running_number=running["number"],
        trial_ids=ids,
        worker=w,
        running=running,
    )
