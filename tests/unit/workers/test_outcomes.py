"""Outcomes that are not a trial's crash: a diverged run, and a worker's own setup errors."""

from __future__ import annotations

import pytest

from hpsearch import tasks
from workers.outcomes import TrainingDiverged, setup_problem
from workers.training import train_trial

DIGITS_MLP = {"trainer": "mlp_classifier", "dataset": "digits", "epochs": 3}


def test_a_diverged_run_completes_with_every_metric_unmeasured() -> None:
    with pytest.raises(TrainingDiverged) as diverged:
        train_trial({"optimizer": "sgd", "lr": 1e6}, DIGITS_MLP, lambda e, m: False, seed=0)
    result = diverged.value.result(DIGITS_MLP)
    # The objective is reported, as no number: the server completes the trial as diverged.
    assert set(result.metrics) >= set(tasks.METRICS) and not result.stopped_early
    assert all(v is None for v in result.metrics.values())


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (FileNotFoundError("dataset 'mnist': data_path /data does not exist"), "a file is missing"),
        (ModuleNotFoundError("No module named 'lab'"), "cannot be imported"),
        (RuntimeError("Found no NVIDIA driver on your system"), "CUDA is unavailable"),
        (RuntimeError("CUDA error: no CUDA GPUs are available"), "CUDA is unavailable"),
        (ZeroDivisionError("division by zero"), None),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), None),
    ],
)
def test_setup_errors_are_told_from_a_trials_own(error: Exception, says: str | None) -> None:
    problem = setup_problem(error)
    assert (problem is None) if says is None else (says in (problem or ""))
