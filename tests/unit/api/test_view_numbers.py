"""What the study page writes as numbers: integer ticks, β ticks, one number format, sampled
legend counts, the history's "zoom to the top" range, WebGL past a thousand points, the
drawing order of groups, importance's count and uncertainty, negative gaps explained."""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from api.views import bias_variance, isolines
from api.views.figures import (
    EDF_STEPS,
    GL_POINTS,
    contour_figure,
    edf_figure,
    history_figure,
    int_ticks,
    param_figure,
    timeline_figure,
    top_range,
)
from api.views.study import study_plots
from api.web_assets import fmt
from hpsearch.importance import TRUSTED_TRIALS, importance
from hpsearch.space import IntParam
from hpsearch.store.timeline import Span
from tests.unit.api.test_views import OBJECTIVE, SPACE, SPEC, point, random_points


@pytest.mark.parametrize(
    ("low", "high", "scale", "ticks"),
    [
        (16, 256, "log", [16, 32, 64, 128, 256]),  # powers of two where they fit
        (1, 100_000, "log", [1, 10, 100, 1000, 10_000, 100_000]),  # decades apart
        (3, 7, "log", [3, 5, 7]),
        (1, 3, "linear", [1, 2, 3]),
        (10, 500, "linear", [10, 100, 200, 300, 400, 500]),
    ],
)
def test_integer_axes_tick_whole_numbers(low: int, high: int, scale: str, ticks: list[int]) -> None:
    got = int_ticks(IntParam(name="n", low=low, high=high, scale=scale))  # type: ignore[arg-type]
    assert got == ticks and all(isinstance(t, int) for t in got)


def test_log_and_reverse_log_axes_read_in_the_parameters_own_values() -> None:
    points = random_points(30)
    units = param_figure(SPACE["hidden_units"], points, OBJECTIVE, None)["layout"]["xaxis"]
    assert units["type"] == "log"
    assert units["tickvals"] == [16, 32, 64, 128, 256]
    assert units["ticktext"] == ["16", "32", "64", "128", "256"]
    lr = param_figure(SPACE["lr"], points, OBJECTIVE, None)["layout"]["xaxis"]
    assert lr["dtick"] == 1  # four decades: the powers of ten only, not "2 3 4 … 10² 2"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (131_200.0, "131,200"),
        (32_790.0, "32,790"),
        (6135.0, "6,135"),
        (6135, "6,135"),
        (0.95123, "0.9512"),
        (-0.0, "0"),
        (-0.00001, "-1.000e-05"),
        (-0.4, "-0.4"),
        (2.0e6, "2,000,000"),
        (None, "—"),
    ],
)
def test_one_number_format(value: float | int | None, text: str) -> None:
    assert fmt(value) == text


def test_legend_counts_say_when_they_are_of_a_sample_and_feasible_is_drawn_on_top() -> None:
    everything = [point(i, 0.5 + i / 1000) for i in range(40)]
    everything += [point(40 + i, 0.3, latency=400) for i in range(10)]
    fig = history_figure(everything[:20] + everything[40:], OBJECTIVE, None, line_from=everything)
    names = [t["name"] for t in fig["data"]]
    assert "feasible (20 of 40 shown)" in names
    assert "broke latency_ms ≤ 100 (10)" in names  # drawn whole: no "of"
    # Infeasible first, feasible over it; the legend lists feasible first all the same.
    markers = [t for t in fig["data"] if t["name"] != "best feasible so far"]
    assert names.index("broke latency_ms ≤ 100 (10)") < names.index("feasible (20 of 40 shown)")
    ranks = {t["name"]: t["legendrank"] for t in markers}
    assert ranks["feasible (20 of 40 shown)"] < ranks["broke latency_ms ≤ 100 (10)"]


def test_webgl_past_a_thousand_points_for_every_trace_of_the_plot() -> None:
    small = history_figure([point(i, 0.5) for i in range(GL_POINTS)], OBJECTIVE, 1000)
    assert {t["type"] for t in small["data"]} == {"scatter"}
    large = history_figure([point(i, 0.5) for i in range(GL_POINTS + 1)], OBJECTIVE, 1000)
    assert {t["type"] for t in large["data"]} == {"scattergl"}


def test_history_zooms_to_the_top_half_where_the_search_happens() -> None:
    rng = random.Random(1)
    # Most trials fail to learn (0.1), the search happens in 0.95..0.98.
    values = [0.1] * 40 + [0.95 + 0.03 * rng.random() for _ in range(60)]
    points = [point(i, v) for i, v in enumerate(values)]
    low, high = top_range(points, OBJECTIVE) or (0.0, 0.0)
    assert 0.94 < low < 0.97 and 0.98 < high < 0.99
    fig = history_figure(points, OBJECTIVE, None)
    assert fig["layout"]["yaxis"]["range"] == [low, high]
    buttons = fig["layout"]["updatemenus"][0]["buttons"]
    assert buttons[1]["args"] == [{"yaxis.autorange": True}]
    # Values spread evenly over the axis: nothing is squashed, no zoom.
    assert top_range([point(i, i / 100) for i in range(100)], OBJECTIVE) is None


def test_importance_counts_every_trial_and_has_an_uncertainty() -> None:
    rng = random.Random(2)
    params = [SPACE.from_unit({n: rng.random() for n in SPACE}) for _ in range(600)]
    values = [SPACE["lr"].to_unit(p["lr"]) + 0.1 * rng.random() for p in params]
    result = importance(SPACE, params, values, max_trials=400)
    assert result is not None
    assert (result.n_trials, result.n_given) == (400, 600)
    assert result.ranked()[0][0] == "lr"
    # The clear effect is estimated tightly; noise parameters sit within ~2 errors of 0.
    assert 0 < result.errors["lr"] < 0.05
    assert all(result.scores[n] < 2 * result.errors[n] + 0.02 for n in SPACE if n != "lr")


def test_importance_says_too_few_below_thirty_trials_and_the_true_count_above() -> None:
    few = study_plots(SPEC, random_points(TRUSTED_TRIALS, seed=4), None)
    assert few["importance"] is None
    assert few["importance_note"].startswith("too few completed trials to tell:")
    plots = study_plots(SPEC, random_points(200, seed=4), None)
    assert plots["importance_note"].startswith(f"from {plots['completed']:,} completed trials")
    _stems, dots = plots["importance"]["data"]
    assert len(dots["error_x"]["array"]) == len(SPACE)


def test_a_negative_gap_is_explained() -> None:
    panel = bias_variance.panel({"train_error": 0.01, "dev_error": 0.05}, reference_error=0.02)
    assert panel is not None
    gaps = {g.key: g for g in panel.gaps}
    assert gaps["avoidable_bias"].value == pytest.approx(-0.01)
    assert "below human-level" in gaps["avoidable_bias"].note
    assert gaps["variance"].note == ""


def test_edf_is_the_share_of_feasible_trials_at_or_below_each_value_in_few_steps() -> None:
    points = [point(i, i / 10_000) for i in range(10_000)]
    points += [point(10_000 + i, 0.99, latency=400) for i in range(50)]  # infeasible: left out
    fig = edf_figure(points, OBJECTIVE)
    assert fig is not None and fig["layout"]["meta"]["trials"] == 10_000
    xs, ys = fig["data"][0]["x"], fig["data"][0]["y"]
    assert len(xs) <= EDF_STEPS and xs == sorted(xs) and ys == sorted(ys)
    assert (xs[0], ys[-1], xs[-1]) == (0.0, 1.0, 0.9999)
    half = xs.index(min(xs, key=lambda x: abs(x - 0.5)))
    assert ys[half] == pytest.approx(0.5, abs=0.01)
    assert edf_figure(points[:1], OBJECTIVE) is None


def test_timeline_draws_a_bar_per_trial_in_its_workers_row_running_ones_to_now() -> None:
    t0 = datetime(2026, 1, 1, 12, 0, 0)
    spans = [
        Span(0, "completed", "w1", t0, t0 + timedelta(seconds=30)),
        Span(1, "pruned", "w2", t0, t0 + timedelta(seconds=10)),
        Span(2, "completed", "w1", t0 + timedelta(seconds=31), t0 + timedelta(seconds=50)),
        Span(3, "running", "w2", t0 + timedelta(seconds=12), None),
    ]
    fig = timeline_figure(spans, now=t0 + timedelta(seconds=60))
    assert fig is not None
    traces = {t["name"]: t for t in fig["data"]}
    assert sorted(traces) == ["completed (2)", "pruned (1)", "running (1)"]
    done = traces["completed (2)"]
    assert done["y"] == ["w1", "w1", None, "w1", "w1", None]
    assert done["x"][:2] == ["2026-01-01T12:00:00", "2026-01-01T12:00:30"]
    assert traces["running (1)"]["x"][1] == "2026-01-01T12:01:00"  # runs to now
    assert fig["layout"]["yaxis"]["categoryarray"] == ["w1", "w2"]
    assert timeline_figure([], now=t0) is None


def test_contour_cells_are_even_on_each_parameters_own_scale() -> None:
    rng = random.Random(5)
    points = []
    for i in range(2000):
        params = SPACE.from_unit({n: rng.random() for n in SPACE})
        value = SPACE["lr"].to_unit(params["lr"])  # the objective follows lr's log scale
        points.append(point(i, value, params=params))
    fig = contour_figure(SPACE["lr"], SPACE["batch_size"], points, OBJECTIVE, bins=10)
    assert fig is not None
    trace = fig["data"][0]
    assert fig["layout"]["meta"]["bins"] == [10, 3]  # a cell per batch_size choice
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert sorted(set(trace["y"])) == [0.0, 1.0, 2.0]
    # Cell centres are log-spaced: 10^-4 … 1 in ten equal steps of log10.
    xs = sorted(set(trace["x"]))
    assert xs[0] == pytest.approx(10 ** (-4 + 0.2)) and xs[-1] == pytest.approx(10**-0.2)
    # The value rises along lr's unit scale, whatever batch_size; the kernel (one cell wide
    # here) pulls the edge cells a little towards the middle.
    by_x: dict[float, list[float]] = {}
    for x, mean in zip(trace["x"], trace["marker"]["color"], strict=True):
        by_x.setdefault(x, []).append(mean)
    means = [statistics.fmean(by_x[x]) for x in xs]
    assert all(a < b for a, b in pairwise(means))
    assert 0.05 < means[0] < 0.15 and 0.85 < means[-1] < 0.95
    assert sum(c for c, _ in trace["customdata"]) == fig["layout"]["meta"]["trials"]
    assert contour_figure(SPACE["lr"], SPACE["beta"], points[:1], OBJECTIVE) is None


def test_the_contour_fills_in_between_trials_but_not_far_from_them() -> None:
    """Twelve trials on a diagonal of lr × beta, value u_lr + u_beta: cells between them get
    a value interpolated from their neighbours; the far corners stay empty."""
    points = []
    for k in range(12):
        u = (k + 0.5) / 12
        params = SPACE.from_unit(
            {"lr": u, "beta": u, "hidden_units": 0.5, "layers": 0.5, "batch_size": 0.5}
        )
        points.append(point(k, 2 * u, params=params))
    fig = contour_figure(SPACE["lr"], SPACE["beta"], points, OBJECTIVE, bins=32)
    assert fig is not None
    trace = fig["data"][0]
    empty = sum(1 for c, _ in trace["customdata"] if c == 0)
    assert empty > 2 * len(points)  # most drawn cells hold no trial: they are interpolated
    assert len(trace["x"]) < 32 * 32  # the corners far from the diagonal are not drawn:
    cells = {
        (x, y): v for x, y, v in zip(trace["x"], trace["y"], trace["marker"]["color"], strict=True)
    }
    # lr's smallest and beta's largest (1−β smallest): the corner off the diagonal.
    assert (min(trace["x"]), min(trace["y"])) not in cells
    assert (min(trace["x"]), max(trace["y"])) in cells  # on the diagonal
    values = trace["marker"]["color"]
    assert min(values) >= 2 * 0.5 / 12 - 1e-9 and max(values) <= 2 * 11.5 / 12 + 1e-9


def test_iso_lines_cross_where_the_grid_crosses_the_level_and_stop_where_it_is_unknown() -> None:
    ramp = np.array([[float(i)] * 4 for i in range(4)])  # the value is the row index
    segments = isolines.isolines(ramp, 1.5)
    assert sorted(segments) == [((1.5, j), (1.5, j + 1)) for j in range(3)]
    ramp[1, 2] = np.nan  # the two cells with that corner draw nothing
    assert sorted(isolines.isolines(ramp, 1.5)) == [((1.5, 0.0), (1.5, 1.0))]
    # A saddle joins across the cell the way its mean says: two segments, not crossing.
    saddle = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert len(isolines.isolines(saddle, 0.4)) == 2
    assert isolines.levels(0.03, 0.97) == [0.2, 0.4, 0.6, 0.8]
    assert isolines.along([1e-4, 1e-2], 0.5, log=True) == pytest.approx(1e-3)


def test_the_contour_draws_iso_lines_at_round_levels_on_the_parameters_own_scale() -> None:
    """The value follows lr's unit (log) scale alone: every iso-line is upright, where lr's
    unit position equals its level, and runs the whole height of the map."""
    rng = random.Random(3)
    points = []
    for i in range(3000):
        params = SPACE.from_unit({n: rng.random() for n in SPACE})
        points.append(point(i, SPACE["lr"].to_unit(params["lr"]), params=params))
    fig = contour_figure(SPACE["lr"], SPACE["beta"], points, OBJECTIVE, bins=16)
    assert fig is not None
    levels = fig["layout"]["meta"]["levels"]
    assert levels == [0.2, 0.4, 0.6, 0.8]
    lines = fig["data"][1]
    xs = [x for x in lines["x"] if x is not None]
    assert len(xs) >= 2 * len(levels) * 15 * 0.8  # about a segment per row of cells per level
    # Within a cell (1/16 of the unit range) of a level: placed on lr's log scale.
    assert all(min(abs(SPACE["lr"].to_unit(x) - v) for v in levels) < 1 / 16 for x in xs)
    # β's axis is 1 − β: each line spans the map's height, cell centres to cell centres.
    for level in levels:
        heights = [
            SPACE["beta"].to_unit(1 - y)
            for x, y in zip(lines["x"], lines["y"], strict=True)
            if x is not None and abs(SPACE["lr"].to_unit(x) - level) < 1 / 16
        ]
        assert max(heights) - min(heights) > 0.9, level
