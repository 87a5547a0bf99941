"""``hpsearch status`` in words: the constraint a trial broke, its error, the test metrics once
evaluated, and the web addresses."""

from __future__ import annotations

from typing import Any

from hpsearch.cli_studies import parse_assignments
from hpsearch.study_status import format_status
from tests.conftest import digits_spec


def _trial(number: int, **fields: Any) -> dict[str, Any]:
    base = {
        "id": 100 + number,
        "study_id": 3,
        "number": number,
        "state": "completed",
        "params": {"lr": 0.01},
        "metrics": {"dev_accuracy": 0.9, "latency_ms": 5.0},
        "value": 0.9,
        "feasible": True,
        "error": None,
        "url": f"/studies/3/trials/{number}",
    }
    return {**base, **fields}


def test_status_names_what_broke_the_test_metrics_and_the_urls() -> None:
    best = _trial(18)
    slow = _trial(
        4, metrics={"dev_accuracy": 0.95, "latency_ms": 250.0}, value=0.95, feasible=False
    )
    failed = _trial(
        5,
        state="failed",
        value=None,
        feasible=None,
        metrics={},
        error="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory",
    )
    study = {
        "id": 3,
        "name": "digits",
        "state": "completed",
        "reason": "max_trials (20) reached",
        "objective": "maximize dev_accuracy subject to latency_ms ≤ 100",
        "counts": {
            "queued": 0,
            "running": 0,
            "completed": 19,
            "pruned": 0,
            "failed": 1,
            "max_trials": 20,
        },
        "best": best,
        "spec": digits_spec(),
    }
    text = format_status(
        study,
        [best, slow, failed],
        server="http://h:8765",
        test_metrics={"test_accuracy": 0.91},
    )
    assert "  web: http://h:8765/studies/3" in text
    assert "    http://h:8765/studies/3/trials/18" in text
    assert "test set (evaluated once): test_accuracy=0.91" in text
    assert "#4    completed     0.95 broke latency_ms ≤ 100" in text
    assert "error: RuntimeError: CUDA out of memory" in text


def test_enqueue_values_are_typed() -> None:
    assert parse_assignments(["lr=0.01", "layers=2", "act=relu", "bn=true"]) == {
        "lr": 0.01,
        "layers": 2,
        "act": "relu",
        "bn": True,
    }
