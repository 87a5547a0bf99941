"""The web view in a real headless chromium against a real server: every page loads, plots
render, the best trial shown is the feasible one, controls change the study, pages follow
live changes. Screenshots land in test-artifacts/."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.e2e.conftest import Console, draw_every_plot, screenshot
from tests.http_worker import build_study

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLOTTED = "#{} .main-svg"


def _wait_for_plots(page: Any) -> None:
    draw_every_plot(page, 5)
    for plot in ("plot-history", "plot-curves", "plot-parallel"):
        page.wait_for_selector(PLOTTED.format(plot))


def _trace_names(page: Any, plot: str) -> list[str]:
    names: list[str] = page.evaluate(f"document.getElementById('{plot}').data.map(t => t.name)")
    return names


def _paths(server: ServerProcess) -> Any:
    return httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]


def _api(server: ServerProcess, path: str) -> Any:
    return httpx.get(f"{server.url}/api/v1{path}", timeout=30).json()


def test_study_page_plots_and_shows_the_feasible_best(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    p, console = page
    built = build_study(server)
    p.goto(f"{server.url}/studies/{built.id}")
    _wait_for_plots(p)

    assert p.inner_text("#objective") == "maximize dev_accuracy subject to latency_ms ≤ 100"
    # Trial 1 scored higher (0.97) but broke the latency constraint: never best.
    assert p.get_attribute("#best-link", "data-trial") == str(built.best_number)
    assert p.get_attribute("#trials tr.best", "data-trial") == str(built.best_number)
    infeasible = p.locator("#trials tr[data-feasible='False']")
    assert infeasible.count() == 2
    # A compact mark in the table, the threshold in its title.
    mark = infeasible.first.locator(".badge.infeasible")
    assert mark.inner_text() == "✗ latency_ms"
    assert mark.get_attribute("title") == "broke latency_ms ≤ 100"

    history = _trace_names(p, "plot-history")
    assert "broke latency_ms ≤ 100 (2)" in history and "best feasible so far" in history
    assert "pruned (1)" in history
    assert p.locator("#plot-parallel .parcoords, #plot-parallel .gl-container").count() > 0
    # A handful of trials: importance says so rather than rank parameters on noise.
    assert "too few completed trials to tell" in p.inner_text("#plot-importance")
    scales = p.evaluate(
        "[...document.querySelectorAll('#param-plots .plot')]"
        ".map(e => [e.layout.meta.param, e._fullLayout.xaxis.type])"
    )
    assert dict(scales) == {
        "lr": "log",
        "beta": "log",
        "hidden_units": "log",
        "layers": "linear",  # levels 1, 2, 3, spread sideways
        "batch_size": "linear",  # choices at 0, 1, 2, labelled 32, 64, 128
    }
    curves = _trace_names(p, "plot-curves")
    assert f"trial {built.best_number} (best) · dev" in curves
    assert "pruned here" in curves and "failed here" in curves

    advice = p.inner_text("#advice")
    assert advice.startswith("Largest gap:") and "Next:" in advice
    assert p.locator("#diagnosis tr.gap").count() == 2  # avoidable bias, variance

    screenshot(p, "study-page")
    assert console.errors == []


def test_controls_change_the_study(server: ServerProcess, page: tuple[Any, Console]) -> None:
    p, console = page
    built = build_study(server)
    p.on("dialog", lambda dialog: dialog.accept())
    p.goto(f"{server.url}/studies/{built.id}")
    p.wait_for_selector(PLOTTED.format("plot-history"))

    p.click("button[data-action=pause]")
    p.wait_for_selector("#study-state .state.paused")
    assert _api(server, f"/studies/{built.id}")["state"] == "paused"
    assert p.is_hidden("button[data-action=pause]") and p.is_visible("button[data-action=resume]")
    p.click("button[data-action=resume]")
    p.wait_for_selector("#study-state .state.running")
    assert _api(server, f"/studies/{built.id}")["state"] == "running"

    # Select an infeasible trial: its learning curve joins the best one's.
    infeasible_id = built.trial_ids[built.infeasible_numbers[0]]
    p.check(f"input.pick[data-id='{infeasible_id}']")
    p.wait_for_function(
        "document.getElementById('plot-curves').data"
        f".some(t => t.name === 'trial {built.infeasible_numbers[0]} · dev')"
    )

    running_id = built.trial_ids[built.running_number]
    p.click(f"[data-stop-trial='{running_id}']")
    p.wait_for_selector("#toast:not([hidden])")
    assert _api(server, f"/trials/{running_id}")["stop_requested"] is True

    p.fill("#enqueue input[name=lr]", "0.002")
    p.select_option("#enqueue select[name=batch_size]", label="32")
    p.click("#enqueue button[type=submit]")
    p.wait_for_selector("#enqueue-result.ok")
    queued = _api(server, f"/studies/{built.id}/trials?state=queued")
    assert [(t["params"]["lr"], t["params"]["batch_size"], t["source"]) for t in queued] == [
        (0.002, 32, "user")
    ]
    # Out of the space: the form refuses it before any request (bounds come from the spec).
    p.fill("#enqueue input[name=lr]", "7")
    p.click("#enqueue button[type=submit]")
    assert p.evaluate("document.querySelector('#enqueue input[name=lr]').validity.rangeOverflow")
    assert len(_api(server, f"/studies/{built.id}/trials?state=queued")) == 1

    with p.expect_download() as download:
        p.click("#export-csv")
    text = download.value.path().read_text(encoding="utf-8")
    assert text.startswith("number,state,value,feasible,broken")
    assert len(text.strip().splitlines()) == 1 + 14  # 13 trials and the enqueued one

    p.click("button[data-action=stop]")
    p.wait_for_selector("#study-state .state.stopped")
    assert _api(server, f"/studies/{built.id}")["state"] == "stopped"
    assert p.is_hidden("button[data-action=stop]") and p.is_hidden("button[data-action=resume]")
    screenshot(p, "study-page-stopped")
    assert console.errors == []


def test_the_page_follows_trials_as_they_end(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    p, console = page
    built = build_study(server)
    p.goto(f"{server.url}/studies/{built.id}")
    p.wait_for_selector(PLOTTED.format("plot-history"))
    assert "Running" in p.inner_text("#counts")
    # The running trial finishes with the best feasible score: no reload, the page follows.
    built.worker.run(built.running, 4, 0.99, metrics={"latency_ms": 10})
    p.wait_for_function(
        f"document.getElementById('best-link').dataset.trial === '{built.running_number}'",
        timeout=30_000,
    )
    p.wait_for_function(
        "document.getElementById('plot-history').data"
        ".find(t => t.name === 'best feasible').x[0] === " + str(built.running_number),
        timeout=30_000,
    )
    assert p.get_attribute("#trials tr.best", "data-trial") == str(built.running_number)
    assert console.errors == []


def test_trial_pages(server: ServerProcess, page: tuple[Any, Console]) -> None:
    p, console = page
    built = build_study(server)
    p.goto(f"{server.url}/trials/{built.trial_ids[built.best_number]}")
    p.wait_for_selector(PLOTTED.format("plot-curves"))
    assert "best feasible" in p.inner_text("h1")
    assert p.locator("#events tbody tr").count() == 2  # claimed, completed
    assert "dev_accuracy" in p.inner_text("#metrics")
    assert p.locator("#params dt").count() == 5
    screenshot(p, "trial-page")

    p.goto(f"{server.url}/trials/{built.trial_ids[built.failed_number]}")
    p.wait_for_selector(PLOTTED.format("plot-curves"))
    assert "RuntimeError: training diverged" in p.inner_text("#traceback")
    assert "failed here" in _trace_names(p, "plot-curves")

    p.goto(f"{server.url}/trials/{built.trial_ids[built.pruned_number]}")
    p.wait_for_selector(PLOTTED.format("plot-curves"))
    assert "pruned at step 2" in p.inner_text("#plot-curves")
    assert console.errors == []


def test_fork_from_a_checkpoint(server: ServerProcess, page: tuple[Any, Console]) -> None:
    if "/api/v1/trials/{trial_id}/fork" not in _paths(server):
        pytest.skip("this server has no checkpoints")
    p, console = page
    built = build_study(server)
    running_id = built.trial_ids[built.running_number]
    built.worker.upload_checkpoint(built.running, 2, b"weights")
    p.goto(f"{server.url}/trials/{running_id}")
    p.wait_for_selector(PLOTTED.format("plot-curves"))
    p.click("#fork")
    p.fill("#fork-form input[name=lr]", "0.0005")
    p.click("#fork-form button[type=submit]")
    p.wait_for_selector("#fork-result.ok")
    queued = _api(server, f"/studies/{built.id}/trials?state=queued")
    assert len(queued) == 1 and queued[0]["params"]["lr"] == 0.0005
    assert console.errors == []


def test_the_best_trial_is_evaluated_on_test_once(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    if "/api/v1/studies/{study_id}/evaluate-test" not in _paths(server):
        pytest.skip("this server has no final test evaluation")
    p, console = page
    built = build_study(server)
    p.goto(f"{server.url}/studies/{built.id}")
    p.wait_for_selector(PLOTTED.format("plot-history"))
    # The labels of the error ladder (their layout is the stylesheet's business).
    assert [t.strip() for t in p.locator(".rung > span").all_inner_texts()] == [
        "Human-level",
        "Train",
        "Dev",
    ]
    p.click("[data-evaluate-test]")
    p.wait_for_selector("#final-evaluation .state")
    evaluation = _api(server, f"/studies/{built.id}/evaluate-test")
    assert evaluation["trial_id"] == built.trial_ids[built.best_number]
    # A worker runs the job (over HTTP, as workers do); the page follows without a reload.
    job = built.worker.claim(built.id)
    assert (job["kind"], job["id"]) == ("evaluate_test", evaluation["trial_id"])
    built.worker.post(
        f"/trials/{job['id']}/test-evaluation/complete",
        {
            "worker_id": built.worker.worker_id,
            "attempt": job["attempt"],
            "metrics": {"test_accuracy": 0.88, "test_error": 0.12},
        },
    )
    p.wait_for_selector("#diagnosis tr.gap[data-gap='dev_overfitting']", timeout=30_000)
    assert "Test" in p.inner_text("#diagnosis .ladder")
    assert "completed" in p.inner_text("#final-evaluation").lower()
    assert "test_error" in p.inner_text("#best")
    screenshot(p, "study-page-test-evaluated")
    assert console.errors == []


def test_studies_and_workers_pages(server: ServerProcess, page: tuple[Any, Console]) -> None:
    p, console = page
    built = build_study(server)
    httpx.post(f"{server.url}/api/v1/studies", json=_api(server, f"/studies/{built.id}")["spec"])
    httpx.post(f"{server.url}/api/v1/studies/2/stop").raise_for_status()
    p.goto(server.url)
    assert p.locator("#studies tbody tr").count() == 2
    row = p.locator(f"#studies tr[data-study='{built.id}']")
    assert "12 / 20" in row.inner_text() and "RUNNING" in row.inner_text().upper()
    assert "maximize dev_accuracy subject to latency_ms ≤ 100" in row.inner_text()
    screenshot(p, "studies-page")
    p.click("a.chip:text-is('stopped')")
    p.wait_for_url("**/?state=stopped")
    assert p.locator("#studies tbody tr").count() == 1
    assert p.get_attribute("#studies tbody tr", "data-study") == "2"

    p.goto(f"{server.url}/workers")
    worker = p.locator("#workers tr[data-worker='e2e-worker']")
    assert worker.get_attribute("data-status") == "alive"
    assert f"trial {built.running_number}" in worker.inner_text()
    screenshot(p, "workers-page")
    assert console.errors == []


def test_coarse_to_fine_regions_are_drawn_over_the_scatter(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    if "/api/v1/studies/{study_id}/regions" not in _paths(server):
        pytest.skip("this server has no regions endpoint")
    p, console = page
    sampler = {"kind": "coarse_to_fine", "rounds": 3, "trials_per_round": 5, "top_k": 2}
    built = build_study(server, sampler={**sampler, "seed": 1})
    p.goto(f"{server.url}/studies/{built.id}")
    p.wait_for_selector("#regions-key:not([hidden])")
    draw_every_plot(p, 5)
    p.wait_for_function(
        "[...document.querySelectorAll('#param-plots .plot')]"
        ".every(e => e.layout && (e.layout.shapes || []).length > 0)"
    )
    shapes = p.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#param-plots .plot')]"
        ".map(e => [e.layout.meta.param, (e.layout.shapes || []).length]))"
    )
    assert shapes["lr"] == 3 and shapes["layers"] == 3  # one region per round
    assert shapes["batch_size"] >= 3  # one box per kept choice per round
    # The history marks where rounds 2 and 3 began.
    p.wait_for_function("(document.getElementById('plot-history').layout.shapes || []).length")
    marks = p.evaluate(
        "document.getElementById('plot-history').layout.shapes.map(s => [s.x0, s.label.text])"
    )
    assert marks == [[4.5, "round 2"], [9.5, "round 3"]]
    screenshot(p, "study-page-coarse-to-fine")
    assert console.errors == []
