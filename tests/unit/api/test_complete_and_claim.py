"""A completion that claims the next trial is never lost to that claim: where both commit as
one transaction (SQLite), a claim that fails has the completion committed on its own."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import api.routes.trials
from api.app import create_app
from hpsearch.settings import Settings
from tests.conftest import digits_spec

DONE = {"dev_accuracy": 0.5, "latency_ms": 1.0}


def test_a_completion_whose_claim_fails_is_kept_and_its_resend_claims(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(database_url=database_url))
    claim_for = api.routes.trials.claim_for

    def failing_claim(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the sampler failed")

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                api_v1 = "/api/v1"
                spec = digits_spec(budget={"max_trials": 5, "parallelism": 1})
                study = (await client.post(f"{api_v1}/studies", json=spec)).json()
                where = {"host": "h", "study_id": study["id"]}
                claimed = await client.post(f"{api_v1}/claims", json={"worker_id": "w", **where})
                trial = claimed.json()["trial"]
                done = {
                    "worker_id": "w",
                    "attempt": trial["attempt"],
                    "metrics": DONE,
                    "steps": [{"step": 1, "metrics": {"dev_accuracy": 0.4}}],
                    "claim_next": where,
                }
                complete = f"{api_v1}/trials/{trial['trial_id']}/complete"

                monkeypatch.setattr(api.routes.trials, "claim_for", failing_claim)
                assert (await client.post(complete, json=done)).status_code == 500
                kept = (await client.get(f"{api_v1}/trials/{trial['trial_id']}")).json()
                assert kept["state"] == "completed" and kept["value"] == 0.5
                assert [p["step"] for p in kept["intermediates"]] == [1]

                # The worker resends; the claim works again and hands out the next trial.
                monkeypatch.setattr(api.routes.trials, "claim_for", claim_for)
                again = (await client.post(complete, json=done)).json()
                assert again["state"] == "completed"
                assert again["next"]["trial"]["number"] == 1
                ended = (await client.get(f"{api_v1}/studies/{study['id']}")).json()
                assert ended["counts"]["completed"] == 1

    # A thread of its own: a browser test earlier in the run may leave a loop in this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, run()).result()
