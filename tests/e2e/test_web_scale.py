"""The study page of a 10,000-trial study in a real chromium: every plot is drawn with data,
and what a reader of a large study looks for holds (sampled legends say so, integer and β
axes read in their own values, groups can be hidden, importance counts every trial). A small
study whose best trials were imported shows learning curves of the trials that ran here.
With Plotly's bundle blocked, every plot still shows as the server's poster of it.
One browser page for all of it: the suite's time is scarce. Screenshots in test-artifacts/."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, delete, select, update

from bench.web_render import plot_names, seed_study
from hpsearch.store.models import Study, Trial, TrialIntermediate
from tests.conftest import ServerProcess
from tests.e2e.conftest import Console, draw_every_plot, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PARAMS = ["lr", "beta", "hidden_units", "layers", "batch_size"]
PLOTS = [name for name in plot_names() if name not in PARAMS]  # every plot the bench times


def _import_the_best(url: str, n: int) -> tuple[int, int]:
    """A study whose completed trials were all imported (no steps) except one that ran here
    with a learning curve, ranked below them. Returns the study's id and that trial's."""
    study_id = seed_study(url, n, seed=7)
    engine = create_engine(url)
    with engine.begin() as conn:
        completed = conn.execute(
            select(Trial.id, Trial.number, Trial.value)
            .where(Trial.study_id == study_id, Trial.state == "completed")
            .order_by(Trial.value)
        ).all()
        ran_here = completed[0]  # the worst: ranked below every imported trial
        imported = [r.id for r in completed if r.id != ran_here.id]
        conn.execute(update(Trial).where(Trial.id.in_(imported)).values(source="import"))
        ids = select(Trial.id).where(Trial.study_id == study_id)
        conn.execute(delete(TrialIntermediate).where(TrialIntermediate.trial_id.in_(ids)))
        conn.execute(
            TrialIntermediate.__table__.insert(),
            [
                {
                    "trial_id": ran_here.id,
                    "step": step,
                    "attempt": 1,
                    "metrics": {"dev_accuracy": 0.1 * step, "train_accuracy": 0.11 * step},
                    "created_at": conn.execute(select(Study.created_at)).scalars().first(),
                }
                for step in range(1, 4)
            ],
        )
    engine.dispose()
    return study_id, ran_here.id


def _plotted(page: Any) -> dict[str, int]:
    """How many values each plot draws (points, or parallel-coordinate lines)."""
    counts: dict[str, int] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[id^=plot-], [data-param]')]
          .map(el => [el.dataset.param || el.id, (el.data || []).reduce((n, t) =>
            n + (t.dimensions ? t.dimensions[0].values.length : (t.x || []).length), 0)]))"""
    )
    return counts


def _column(page: Any, name: str) -> list[str]:
    """The texts of one column of the trials table, by its header's sort key."""
    values: list[str] = page.evaluate(
        """name => { const heads = [...document.querySelectorAll('#trials thead th')];
          const i = heads.findIndex(th => th.querySelector(`a[data-sort="${name}"]`));
          return [...document.querySelectorAll('#trials tbody tr')]
            .map(tr => tr.children[i].textContent.trim()); }""",
        name,
    )
    return values


def _sort_and_filter_the_table(p: Any, url: str, study_id: int) -> None:
    """Headers sort the 10,000 trials by any column in the database, both ways; the filter
    box keeps the rows that meet it, with their count; a typo is named. The plots stay."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Trial.number, Trial.state, Trial.params, Trial.metrics).where(
                Trial.study_id == study_id
            )
        ).all()
    engine.dispose()
    by_lr = sorted(rows, key=lambda r: (r.params["lr"], r.number))
    plots = p.evaluate("document.getElementById('plot-history').data.length")

    p.click("#trials th a[data-sort='lr']")
    p.wait_for_function("location.search.includes('sort=lr')")
    p.wait_for_selector("#trials th.sorted[aria-sort='ascending'] a[data-sort='lr']")
    assert _column(p, "number") == [str(r.number) for r in by_lr[:50]]
    order = "document.querySelector('#trial-filter [name=order]').selectedOptions[0].textContent"
    assert p.evaluate(order) == "by lr ▲"
    p.click("#trials th a[data-sort='lr']")  # again: reversed
    p.wait_for_selector("#trials th.sorted[aria-sort='descending'] a[data-sort='lr']")
    assert _column(p, "number") == [str(r.number) for r in by_lr[::-1][:50]]
    assert p.evaluate(order) == "by lr ▼"

    kept = [
        r
        for r in rows
        if r.state == "pruned" and r.params["hidden_units"] >= 128 and r.metrics["latency_ms"] < 100
    ]
    p.fill("#trial-filter-text", "hidden_units >= 128, latency_ms < 100, state = pruned")
    p.press("#trial-filter-text", "Enter")
    p.wait_for_function(
        "(new URLSearchParams(location.search).get('filter') || '').endsWith('state = pruned')"
    )
    p.wait_for_function(
        f"document.querySelector('.pager span').textContent.endsWith('of {len(kept)}')"
    )
    numbers = [int(n) for n in _column(p, "number")]
    expected = sorted(kept, key=lambda r: (-r.params["lr"], r.number))[:50]
    assert numbers == [r.number for r in expected]
    assert set(_column(p, "state")) == {"pruned"}
    screenshot(p, "trials-table-sorted-filtered")

    p.fill("#trial-filter-text", "hiden_units > 3")
    p.press("#trial-filter-text", "Enter")
    p.wait_for_selector("#trial-filter-error:not([hidden])")
    assert "no column 'hiden_units'" in p.inner_text("#trial-filter-error")
    # The table was redrawn in place: the history plot is the one drawn at first.
    assert p.evaluate("document.getElementById('plot-history').data.length") == plots


def test_a_10k_trial_study_page_draws_every_plot_and_reads_right(
    server: ServerProcess, page: tuple[Any, Console]
) -> None:
    p, console = page
    big = seed_study(server.database_url, 10_000, seed=10_000)
    small, ran_here = _import_the_best(server.database_url, 40)

    p.goto(f"{server.url}/studies/{big}")
    draw_every_plot(p, len(PARAMS))
    assert p.locator("svg.poster").count() == 0  # Plotly drew over every poster
    drawn = _plotted(p)
    assert sorted(drawn) == sorted(PLOTS + PARAMS)
    assert all(n > 0 for n in drawn.values()), sorted(drawn.items())
    # Parallel coordinates come as SVG lines, a line per trial; WebGL's, which filter by
    # axis, at a click.
    parallel = "document.getElementById('plot-parallel')"
    lines = p.evaluate(f"{parallel}.layout.meta.lines")
    assert lines > 100
    assert (
        p.evaluate(
            f"{parallel}.data.filter(t => t.mode === 'lines')"
            ".reduce((n, t) => n + t.x.filter(x => x === null).length, 0)"
        )
        == lines
    )
    p.click("#parallel-brush")
    p.wait_for_function(f"{parallel}.data[0].type === 'parcoords'")
    assert p.evaluate(f"{parallel}.data[0].dimensions[0].values.length") == lines
    # A first paint of a few hundred of the 10,000, in SVG (no WebGL context to set up);
    # the reader asks for more, drawn with WebGL.
    assert 300 < drawn["plot-history"] < 1000
    traces = "document.getElementById('plot-history').data.map(t => [t.type, t.name, t.visible])"
    assert {kind for kind, _, _ in p.evaluate(traces)} == {"scatter"}
    p.click("#more-points")
    p.wait_for_function(
        "document.getElementById('plot-history').data.some(t => t.type === 'scattergl')"
    )
    assert _plotted(p)["plot-history"] > 1000
    history = p.evaluate(traces)
    assert {kind for kind, _, _ in history} == {"scattergl"}
    # A downsampled group's legend says it is a sample, and of how many.
    feasible = next(name for _, name, _ in history if name.startswith("feasible ("))
    assert " of " in feasible and feasible.endswith(" shown)")
    # The history starts zoomed to the top half of the trials, with a way back.
    menu = p.evaluate("document.getElementById('plot-history').layout.updatemenus[0].buttons")
    assert [b["label"] for b in menu] == ["zoom to the top", "all trials"]
    # Integer axes tick whole numbers; β reads in β.
    axes = p.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#param-plots .plot')]"
        ".map(e => [e.dataset.param, e.layout.xaxis.ticktext || null]))"
    )
    assert axes["hidden_units"] == ["16", "32", "64", "128", "256"]
    assert axes["beta"] == ["0.9", "0.99", "0.999"]
    # Importance counts every completed trial, and says when it used a sample.
    completed = p.evaluate(
        "Number(document.querySelector('#progress dd').textContent.replace(/,/g, ''))"
    )
    note = p.inner_text("#importance-note")
    assert note.startswith(f"from {completed:,} completed trials (estimated on a sample of 5,000)")
    # A legend chip hides its group in every plot.
    p.click("button[data-group='infeasible']")
    p.wait_for_function(
        "[document.getElementById('plot-history'),"
        " ...document.querySelectorAll('#param-plots .plot')].every(e => e.data"
        ".filter(t => t.name.startsWith('broke ')).every(t => t.visible === 'legendonly'))"
    )
    screenshot(p, "study-page-10k")
    _sort_and_filter_the_table(p, server.database_url, big)

    # Imported best trials carry no steps: the curves come from the trial that ran here.
    p.goto(f"{server.url}/studies/{small}")
    p.wait_for_selector("#plot-curves .main-svg")
    curves = p.evaluate(
        "document.getElementById('plot-curves').data"
        ".filter(t => t.customdata && t.x.length).map(t => t.customdata[0])"
    )
    assert ran_here in curves
    screenshot(p, "study-page-imported-best")
    p.click("#best-link")
    p.wait_for_selector("#events")
    assert "Imported with its result" in p.inner_text("#events")
    assert "Queued, not claimed yet" not in p.inner_text("#events")
    screenshot(p, "trial-page-imported")

    # Both studies on one page: a best-so-far line and a distribution each.
    p.goto(f"{server.url}/")
    p.check(f"input[name=studies][value='{big}']")
    p.check(f"input[name=studies][value='{small}']")
    p.click("#compare-button")
    p.wait_for_selector("#plot-compare-edf .main-svg")
    for plot in ("plot-compare-history", "plot-compare-edf"):
        traces = p.evaluate(f"document.getElementById('{plot}').data.map(t => t.x.length)")
        assert len(traces) == 2 and all(n > 1 for n in traces), (plot, traces)
    assert p.locator("#compared tbody tr").count() == 2
    screenshot(p, "compare-studies")
    assert httpx.get(f"{server.url}/compare?studies=0", timeout=30).status_code == 422
    bad = httpx.get(f"{server.url}/studies/{big}/contour.json?x=nope&y=lr", timeout=30)
    assert bad.status_code == 422 and "x" in bad.text and "nope" in bad.text
    bad = httpx.get(f"{server.url}/studies/{big}/posters?sizes=history:12x400", timeout=30)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sizes"
    assert console.errors == []
    _posters_without_plotly(p, server.url, big)


def _posters_without_plotly(p: Any, url: str, study_id: int) -> None:
    """Plotly's bundle never arrives, and every plot still shows: the server's poster of it,
    at the plot's size, with the points Plotly would draw; a point selects its trial's
    learning curve, as a point Plotly draws does."""
    p.route("**/static/plotly.min.js*", lambda route: route.abort())
    p.goto(f"{url}/studies/{study_id}")
    plots = "[...document.querySelectorAll('[id^=plot-], #param-plots .plot')]"
    p.wait_for_function(f"{plots}.every(el => el.querySelector(':scope > svg.poster'))")
    sizes = p.evaluate(
        f"{plots}.map(el => [el.clientWidth, el.clientHeight,"
        " Number(el.querySelector('svg.poster').getAttribute('width')),"
        " Number(el.querySelector('svg.poster').getAttribute('height'))])"
    )
    assert len(sizes) == len(PLOTS + PARAMS)
    assert all((w, h) == (pw, ph) for w, h, pw, ph in sizes), sizes
    assert p.evaluate(f"{plots}.every(el => !el.querySelector('.main-svg'))")  # no Plotly
    history = httpx.get(f"{url}/studies/{study_id}/plots.json", timeout=30).json()["history"]
    points = sum(len(t["x"]) for t in history["data"] if t.get("customdata"))
    # A trace's markers are one path; its trials' ids in the order of its subpaths.
    marks: list[list[Any]] = p.evaluate(
        """[...document.querySelectorAll('#plot-history svg.poster path[data-ids]')]
          .flatMap(path => { const ids = path.dataset.ids.split(' ');
            return [...path.getAttribute('d').matchAll(/M(-?[\\d.]+),(-?[\\d.]+)/g)]
              .map((m, k) => [Number(m[1]), Number(m[2]), ids[k]]); })"""
    )
    assert len(marks) == points
    ticks = p.evaluate(
        "[...document.querySelectorAll(\"[data-param='hidden_units'] svg.poster text\")]"
        ".map(t => t.textContent)"
    )
    assert {"16", "32", "64", "128", "256"} <= set(ticks)
    # A click on the best trial's star selects the nearest marker's trial.
    x, y, _ = marks[-1]
    near = {i for mx, my, i in marks if (mx - x) ** 2 + (my - y) ** 2 < 64}
    p.locator("#plot-history").scroll_into_view_if_needed()
    box = p.locator("#plot-history svg.poster").bounding_box()
    with p.expect_request(lambda r: "curves.json?selected=" in r.url) as asked:
        p.mouse.click(box["x"] + x, box["y"] + y)
    selected = asked.value.url.split("selected=")[1].split("&")[0]
    assert selected in near
    screenshot(p, "study-page-10k-posters")
