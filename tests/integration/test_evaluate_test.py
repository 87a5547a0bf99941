"""Select on dev, report on test: the test set is evaluated once, for the study's final
trial, by a worker, and the test_* metrics appear on that trial only, never in selection.

One server, two studies: one evaluated on request (POST /studies/{id}/evaluate-test), one
that asks for it in its spec (``evaluate_test: true``) and keeps no checkpoints, so its final
model must be retrained before it is evaluated.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, digits_spec

TEST_METRICS = {
    "test_loss",
    "test_accuracy",
    "test_error",
    "test_precision",
    "test_recall",
    "test_f1",
}


def small_study(**overrides: Any) -> dict[str, Any]:
    task = {"trainer": "mlp_classifier", "dataset": "digits", "epochs": 2}
    return digits_spec(
        space={
            "lr": {"type": "float", "low": 0.03, "high": 0.3, "scale": "log"},
            "hidden_units": {"type": "int", "low": 16, "high": 64, "scale": "log"},
        },
        budget={"max_trials": 3, "parallelism": 1},
        task={**task, **overrides.pop("task", {})},
        **overrides,
    )


@pytest.mark.slow
def test_only_the_final_trial_meets_the_test_set(server: ServerProcess) -> None:
    api = f"{server.url}/api/v1"
    refused = httpx.post(
        f"{api}/studies",
        json=small_study(objective={"metric": "test_accuracy", "direction": "maximize"}),
    )
    assert refused.status_code == 422  # selection cannot name a test metric
    assert refused.json()["errors"][0]["field"] == "objective.metric"

    on_request = httpx.post(f"{api}/studies", json=small_study()).json()["id"]
    nothing_yet = httpx.post(f"{api}/studies/{on_request}/evaluate-test", json={})
    assert nothing_yet.status_code == 409 and "no feasible" in nothing_yet.json()["message"]
    worker = server.start_worker("--study", str(on_request))
    assert worker.wait(timeout=180) == 0
    ranked = _request_evaluation(api, on_request)

    automatic = httpx.post(
        f"{api}/studies",
        json=small_study(name="auto", evaluate_test=True, task={"checkpoint_every": 0}),
    ).json()["id"]
    # Serving every study: first the waiting evaluation, then the second study's trials and,
    # as that study ends, its own evaluation; then nothing is left and the worker exits.
    worker = server.start_worker()
    assert worker.wait(timeout=180) == 0

    _check_requested(api, on_request, ranked)
    _check_automatic(api, automatic)


def _request_evaluation(api: str, study_id: int) -> list[dict[str, Any]]:
    study = httpx.get(f"{api}/studies/{study_id}").json()
    assert study["state"] == "completed" and study["final_evaluation"] is None
    ranked: list[dict[str, Any]] = httpx.get(
        f"{api}/studies/{study_id}/trials", params={"order": "rank"}
    ).json()
    assert all(t["test_metrics"] is None for t in ranked)  # nothing touched the test set
    best = study["best"]
    requested = httpx.post(f"{api}/studies/{study_id}/evaluate-test", json={})
    assert requested.status_code == 202, requested.text
    assert requested.json()["trial_id"] == best["id"] and requested.json()["state"] == "queued"
    other = next(t for t in ranked if t["id"] != best["id"])
    second = httpx.post(f"{api}/studies/{study_id}/evaluate-test", json={"trial_id": other["id"]})
    assert second.status_code == 409 and "selection set" in second.json()["message"]
    again = httpx.post(f"{api}/studies/{study_id}/evaluate-test")
    assert again.status_code == 202 and again.json()["trial_id"] == best["id"]
    return ranked


def _check_requested(api: str, study_id: int, ranked: list[dict[str, Any]]) -> None:
    study = httpx.get(f"{api}/studies/{study_id}").json()
    best = study["best"]
    assert study["final_evaluation"]["state"] == "completed"
    assert study["final_evaluation"]["source"] == "user"
    test = httpx.get(f"{api}/trials/{best['id']}").json()["test_metrics"]
    assert set(test) == TEST_METRICS and best["test_metrics"] == test
    assert test["test_error"] == pytest.approx(1 - test["test_accuracy"])
    # The model selected on dev, measured on data it never saw: close to its dev figure.
    assert test["test_accuracy"] == pytest.approx(best["metrics"]["dev_accuracy"], abs=0.1)
    after = httpx.get(f"{api}/studies/{study_id}/trials", params={"order": "rank"}).json()
    assert [(t["id"], t["value"]) for t in after] == [(t["id"], t["value"]) for t in ranked]
    assert [t["id"] for t in after if t["test_metrics"] is not None] == [best["id"]]

    # The worker evaluated the very model the trial reported: its last checkpoint.
    from workers.training import evaluate_checkpoint

    checkpoint = httpx.get(f"{api}/trials/{best['id']}/checkpoint")
    assert checkpoint.headers["X-Checkpoint-Step"] == "2"
    task = study["spec"]["task"]
    assert evaluate_checkpoint(best["params"], task, checkpoint.content) == pytest.approx(test)


def _check_automatic(api: str, study_id: int) -> None:
    study = httpx.get(f"{api}/studies/{study_id}").json()
    evaluation = study["final_evaluation"]
    assert evaluation["source"] == "auto" and evaluation["state"] == "completed"
    assert evaluation["trial_id"] == study["best"]["id"]
    assert set(study["best"]["test_metrics"]) == TEST_METRICS
    trials = httpx.get(f"{api}/studies/{study_id}/trials").json()
    assert [t["id"] for t in trials if t["test_metrics"]] == [study["best"]["id"]]
    assert all(t["checkpoint_step"] is None for t in trials)  # it was retrained to evaluate
