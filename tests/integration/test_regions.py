"""Samplers behind a real server: coarse-to-fine regions over REST, model-based proposals."""

from __future__ import annotations

import math
from typing import Any

import httpx

from tests.conftest import ServerProcess, digits_spec


def _post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1{path}", json=body, timeout=30)


def _claim(server: ServerProcess, worker: str) -> dict[str, Any]:
    r = _post(server, "/claims", {"worker_id": worker})
    assert r.status_code == 200, r.text
    trial: dict[str, Any] = r.json()["trial"]
    assert trial is not None
    return trial


def _complete(server: ServerProcess, trial: dict[str, Any], worker: str, metrics: Any) -> None:
    body = {"worker_id": worker, "attempt": trial["attempt"], "metrics": metrics}
    r = _post(server, f"/trials/{trial['id']}/complete", body)
    assert r.status_code == 200, r.text


def _accuracy(params: dict[str, Any]) -> float:
    """Best at lr = 1e-2 (log scale), beta = 0.99 (reverse_log scale)."""
    lr, beta = math.log10(params["lr"]), math.log10(1 - params["beta"])
    return 1.0 - (lr + 2) ** 2 / 16 - (beta + 2) ** 2


def test_regions_of_a_coarse_to_fine_study_over_rest(server: ServerProcess) -> None:
    sampler = {"kind": "coarse_to_fine", "rounds": 3, "trials_per_round": 8, "top_k": 3}
    spec = digits_spec(sampler={**sampler, "seed": 0}, budget={"max_trials": 30})
    study_id = _post(server, "/studies", spec).json()["id"]
    url = f"{server.url}/api/v1/studies/{study_id}/regions"
    before = httpx.get(url).json()
    assert before["sampler"] == "coarse_to_fine"
    assert [r["round"] for r in before["rounds"]] == [1]
    for _ in range(30):
        trial = _claim(server, "w1")
        metrics = {"dev_accuracy": _accuracy(trial["params"]), "latency_ms": 10.0}
        _complete(server, trial, "w1", metrics)
    body = httpx.get(url).json()
    rounds = body["rounds"]
    assert [(r["round"], r["first_trial"], r["last_trial"]) for r in rounds] == [
        (1, 0, 7),
        (2, 8, 15),
        (3, 16, None),
    ]
    assert rounds[0]["based_on"] == [] and len(rounds[1]["based_on"]) == 3
    volumes = [r["volume"] for r in rounds]
    assert volumes[0] == 1.0 and volumes[2] < volumes[1] < 1.0
    lr = rounds[2]["params"]["lr"]
    assert lr["scale"] == "log"
    # The value interval is the unit interval through the parameter's scale: 10**(-4 + 4u).
    lo, hi = lr["unit"]
    assert math.isclose(lr["values"][0], 10 ** (-4 + 4 * lo))
    assert math.isclose(lr["values"][1], 10 ** (-4 + 4 * hi))
    assert lr["values"][0] <= 1e-2 <= lr["values"][1]
    assert rounds[2]["params"]["batch_size"]["choices"]
    assert rounds[2]["params"]["batch_size"]["unit"] is None
    # Every trial of a round was sampled inside that round's region.
    trials = httpx.get(f"{server.url}/api/v1/studies/{study_id}/trials?limit=100").json()
    for t in trials:
        region = rounds[min(t["number"] // 8, 2)]["params"]
        assert region["lr"]["values"][0] <= t["params"]["lr"] <= region["lr"]["values"][1]


def test_other_samplers_have_no_regions_and_unknown_studies_are_404(server: ServerProcess) -> None:
    study_id = _post(server, "/studies", digits_spec()).json()["id"]
    body = httpx.get(f"{server.url}/api/v1/studies/{study_id}/regions").json()
    assert body == {"study_id": study_id, "sampler": "random", "rounds": []}
    missing = httpx.get(f"{server.url}/api/v1/studies/999/regions")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_parallel_claims_of_a_tpe_study_get_distinct_suggestions(server: ServerProcess) -> None:
    spec = digits_spec(
        sampler={"kind": "tpe", "seed": 0, "n_startup_trials": 4},
        budget={"max_trials": 20, "parallelism": 6},
    )
    study_id = _post(server, "/studies", spec).json()["id"]
    for n in range(4):
        trial = _claim(server, f"w{n}")
        _complete(server, trial, f"w{n}", {"dev_accuracy": _accuracy(trial["params"])})
    # Six workers hold trials at once: the model must not hand two of them the same params.
    held = [_claim(server, f"p{n}") for n in range(6)]
    keys = {tuple(sorted(t["params"].items())) for t in held}
    assert len(keys) == 6
    assert all(t["study_id"] == study_id for t in held)
