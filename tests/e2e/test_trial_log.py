"""A running trial's output on its page, in chromium: tailed live, shown as text."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ServerProcess, digits_spec
from tests.e2e.conftest import Console, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAYLOAD = '<img src=x onerror="window.pwned = 1">'


def test_a_running_trials_output_is_tailed_live_as_text(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    p, console = page
    with server.client() as client:
        study = client.create_study(digits_spec(budget={"max_trials": 1, "parallelism": 1}))
        trial = client.claim("e2e-worker", "box", ["cpu"], study["id"])["trial"]
        held = (trial["id"], "e2e-worker", trial["attempt"])
        first = f"epoch 1 done\n{PAYLOAD}\n"
        offset = client.append_log(*held, 0, first)["next_offset"]
        p.goto(f"{server.url}/trials/{trial['id']}")
        assert p.inner_text("#trial-log").strip() == first.strip()
        client.append_log(*held, offset, "epoch 2 done\n")
        p.wait_for_function(
            "document.getElementById('trial-log').textContent.includes('epoch 2 done')"
        )
    assert p.locator("#trial-log img").count() == 0
    assert p.evaluate("window.pwned") is None
    screenshot(p, "trial-log")
    assert console.errors == []
