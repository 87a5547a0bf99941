"""The worker protocol's batched requests over real HTTP: the report interval a claim grants,
a completion that carries its last steps and claims the next trial, and its resend."""

from __future__ import annotations

from collections.abc import Callable

from hpsearch.client import Client
from tests.conftest import ServerProcess, digits_spec

DONE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def test_a_claim_grants_the_report_interval_unless_a_pruner_judges_each_step(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_REPORT_INTERVAL_S="2.5")
    with Client(server.url) as client:
        plain = client.create_study(digits_spec(name="plain"))
        pruned = client.create_study(
            digits_spec(name="pruned", pruner={"kind": "median", "n_startup_trials": 1})
        )
        first = client.claim("w", "h", [], plain["id"])["trial"]
        second = client.claim("w", "h", [], pruned["id"])["trial"]
    assert first["report_interval_s"] == 2.5
    assert second["report_interval_s"] == 0.0


def test_one_request_completes_a_trial_with_its_steps_and_claims_the_next(
    server: ServerProcess,
) -> None:
    with Client(server.url) as client:
        study = client.create_study(digits_spec(budget={"max_trials": 3, "parallelism": 1}))
        trial = client.claim("w", "h", [], study["id"])["trial"]
        numbers = []
        while trial is not None:
            numbers.append(trial["number"])
            steps = [(s, {"dev_accuracy": s / 10}) for s in range(1, 5)]
            next_claim = {"host": "h", "devices": [], "study_id": study["id"]}
            out = client.complete(
                trial["id"], "w", trial["attempt"], DONE, steps=steps, claim_next=next_claim
            )
            assert (out["state"], out["last_step"]) == ("completed", 4)
            stored = client.trial(trial["id"])["intermediates"]
            assert [p["step"] for p in stored] == [1, 2, 3, 4]
            trial = out["next"]["trial"]
        assert out["next"]["open_studies"] is False
        assert numbers == [0, 1, 2]
        assert client.study(study["id"])["state"] == "completed"


def test_a_resent_completion_answers_with_the_claim_it_made_the_first_time(
    server: ServerProcess,
) -> None:
    with Client(server.url) as client:
        study = client.create_study(digits_spec(budget={"max_trials": 5, "parallelism": 1}))
        trial = client.claim("w", "h", [], study["id"])["trial"]
        next_claim = {"host": "h", "devices": [], "study_id": study["id"]}
        first = client.complete(trial["id"], "w", trial["attempt"], DONE, claim_next=next_claim)
        # The first reply was lost: the worker sends the same completion again.
        again = client.complete(trial["id"], "w", trial["attempt"], DONE, claim_next=next_claim)
        assert again["next"]["trial"]["id"] == first["next"]["trial"]["id"]
        running = [t["id"] for t in client.trials(study["id"]) if t["state"] == "running"]
        assert running == [first["next"]["trial"]["id"]]


def test_a_resent_completion_answers_with_the_test_evaluation_it_handed_out(
    make_server: Callable[..., ServerProcess],
) -> None:
    # The last trial's completion ends the study, and its reply hands out the study's final
    # test evaluation; that reply lost, the resent completion hands out the same evaluation
    # (not nothing, leaving it leased to a worker that never heard of it).
    server = make_server(HPSEARCH_PROBE_SECONDS="0")
    with Client(server.url) as client:
        spec = digits_spec(budget={"max_trials": 1, "parallelism": 1}, evaluate_test=True)
        study = client.create_study(spec)
        trial = client.claim("w", "h", [], study["id"])["trial"]
        next_claim = {"host": "h", "devices": [], "study_id": study["id"]}
        first = client.complete(trial["id"], "w", trial["attempt"], DONE, claim_next=next_claim)
        job = first["next"]["trial"]
        assert job["kind"] == "evaluate_test" and job["id"] == trial["id"]
        again = client.complete(trial["id"], "w", trial["attempt"], DONE, claim_next=next_claim)
        assert again["next"]["trial"] == job
