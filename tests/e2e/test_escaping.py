"""Every string a user or a worker can choose reaches the browser as text, never as markup:
an ``<img onerror>`` payload in a categorical choice, a study's description, a trial's error
and a worker's host is shown literally on every page and plot, and never runs.

Study, parameter and metric names cannot carry it: they must match
``^[A-Za-z_][A-Za-z0-9_.-]{0,99}$`` (spec and reports alike), so a name with ``<`` is refused
at submit; the description stands in for the study's name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.e2e.conftest import Console, draw_every_plot
from tests.http_worker import WorkerOverHttp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Plotly reads a subset of HTML in its text (<b>, <br>, <a href>): the <b> shows whether a
# plot takes the text as markup rather than as the literal string.
PAYLOAD = "<b>b</b><img src=x onerror=\"window.__xss=1;document.title='xss'\">"
ENTRY = "tests.integration.custom_trainers:curve"


def _study_with_the_payload(server: ServerProcess) -> tuple[int, list[int]]:
    api = f"{server.url}/api/v1"
    spec = {
        "name": "escaping",
        "description": f"described as {PAYLOAD}",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {
            "activation": {"type": "categorical", "choices": ["relu", PAYLOAD]},
            "quality": {"type": "float", "low": 0.0, "high": 1.0},
        },
        "budget": {"max_trials": 6, "parallelism": 1},
        "task": {"trainer": "custom", "entry_point": ENTRY, "epochs": 2},
    }
    # A name that carries it is refused: names are identifiers.
    bad = httpx.post(f"{api}/studies", json={**spec, "name": PAYLOAD}, timeout=30)
    assert bad.status_code == 422 and "name" in bad.text
    r = httpx.post(f"{api}/studies", json=spec, timeout=30)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    w = WorkerOverHttp(server, worker_id="escaping-worker")
    ids = []
    for i, choice in enumerate(["relu", PAYLOAD, PAYLOAD, "relu"]):
        params = {"activation": choice, "quality": 0.2 * (i + 1)}
        httpx.post(f"{api}/studies/{sid}/trials", json={"params": params}).raise_for_status()
        body = {"worker_id": w.worker_id, "host": PAYLOAD, "study_id": sid, "entry_points": [ENTRY]}
        trial = w.post("/claims", body)["trial"]
        ids.append(trial["id"])
        lease = {"worker_id": w.worker_id, "attempt": trial["attempt"]}
        for step in (1, 2):
            metrics = {"dev_accuracy": 0.1 * (i + 1) * step, "train_accuracy": 0.5}
            w.post(
                f"/trials/{trial['id']}/intermediate",
                {**lease, "step": step, "metrics": metrics},
            )
        if i == 2:
            w.post(f"/trials/{trial['id']}/fail", {**lease, "error": f"boom {PAYLOAD}"})
        else:
            w.post(
                f"/trials/{trial['id']}/complete",
                {**lease, "metrics": {"dev_accuracy": 0.2 * (i + 1)}},
            )
    return sid, ids


def _assert_inert(p: Any) -> None:
    assert p.evaluate("window.__xss") is None
    assert p.title() != "xss"
    assert p.locator("img[src='x']").count() == 0


def test_a_payload_is_shown_as_text_and_never_runs(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    p, console = page
    sid, ids = _study_with_the_payload(server)

    p.goto(f"{server.url}/studies/{sid}")
    draw_every_plot(p, 2)
    p.wait_for_selector("#plot-parallel .main-svg")
    _assert_inert(p)
    assert f"described as {PAYLOAD}" in p.inner_text(".description")
    assert PAYLOAD in p.inner_text("#trials")
    # Plot text: the categorical's tick labels, on its scatter and on the parallel axes.
    for plot in ("#param-plots", "#plot-parallel"):
        shown = p.evaluate(f"document.querySelector('{plot}').textContent")
        assert PAYLOAD in shown, (plot, shown)
    # Hover text, which Plotly reads as markup too, carries the choice escaped for it.
    hover = p.evaluate(
        "[...document.querySelectorAll('#param-plots .plot')]"
        ".flatMap(e => e.data.flatMap(t => t.text || []))"
    )
    choice_hovers = [t for t in hover if "activation = " in t and "relu" not in t]
    assert choice_hovers and all("&lt;b&gt;b&lt;/b&gt;&lt;img" in t for t in choice_hovers)

    p.goto(f"{server.url}/trials/{ids[2]}")
    p.wait_for_selector("main")
    _assert_inert(p)
    body = p.inner_text("body")
    assert PAYLOAD in body and f"boom {PAYLOAD}" in body

    for path in ("/", "/workers"):
        p.goto(f"{server.url}{path}")
        p.wait_for_selector("main")
        _assert_inert(p)
    assert PAYLOAD in p.inner_text("body")  # the worker's host
    assert console.errors == []
