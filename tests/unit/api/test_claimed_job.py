"""The API's ClaimedTrial and the core's ClaimedJob describe one wire shape: what the server
sends is what workers and the notebook trial lease read."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

from api.schemas import ClaimedTrial
from hpsearch.claimed_job import ClaimedJob


def test_claimed_trial_sends_exactly_the_fields_a_worker_reads() -> None:
    assert set(ClaimedTrial.model_fields) == set(typing.get_type_hints(ClaimedJob))


def test_what_the_server_sends_is_what_the_worker_reads() -> None:
    sent = ClaimedTrial(
        id=7,
        study_id=2,
        number=3,
        attempt=1,
        params={"lr": 0.1},
        task={"trainer": "mlp_classifier", "epochs": 2},
        lease_expires_at=datetime(2026, 1, 1, tzinfo=UTC),
        resume_step=None,
        kind="evaluate_test",
        report_interval_s=5.0,
    ).model_dump(mode="json")
    hints = typing.get_type_hints(ClaimedJob)
    assert set(sent) == set(hints)
    # The one field whose types differ between the two sides: a datetime becomes its text.
    assert hints["lease_expires_at"] is str and sent["lease_expires_at"].startswith("2026-01-01")
    assert sent["id"] == 7 and sent["kind"] == "evaluate_test" and sent["report_interval_s"] == 5.0
