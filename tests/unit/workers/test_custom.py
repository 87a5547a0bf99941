"""The worker's own guard on custom code, whatever the server hands out."""

from __future__ import annotations

import pytest

from workers.custom import EntryPointNotAllowed, Trial, run_custom


def test_an_entry_point_the_worker_does_not_allow_is_refused_before_any_import() -> None:
    # The module does not exist: importing it would raise ModuleNotFoundError instead.
    task = {"trainer": "custom", "entry_point": "nowhere.at_all:train", "epochs": 1}
    with pytest.raises(EntryPointNotAllowed, match=r"start it with --allow nowhere\.at_all:train"):
        run_custom({}, task, lambda step, metrics: False, allowed=["nowhere.at_all:other"])


def test_a_custom_entry_points_trial_is_a_notebooks_trial() -> None:
    """One training function serves a worker and ``study.optimize``: both trials are
    ``hpsearch.TrialLike``, and both take a report's metrics as a dict or as keywords."""
    import hpsearch

    reports: list[tuple[int, dict[str, float]]] = []
    trial = Trial(
        params={"lr": 0.1},
        task={},
        number=0,
        device="cpu",
        seed=0,
        _report=lambda step, metrics: bool(reports.append((step, metrics))),
    )
    assert isinstance(trial, hpsearch.TrialLike)
    trial.report(1, {"loss": 0.5})
    trial.report(2, loss=0.25)
    assert reports == [(1, {"loss": 0.5}), (2, {"loss": 0.25})]
