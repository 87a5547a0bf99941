"""The static SVG posters the study page shows before Plotly draws: well-formed, on Plotly's
scales and layout, escaped, and every figure the page builds renders."""

from __future__ import annotations

import html
import itertools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from api.views import style
from api.views.curves import CurveTrial, curves_figure
from api.views.figures import (
    contour_figure,
    edf_figure,
    history_figure,
    importance_figure,
    param_figure,
    timeline_figure,
)
from api.views.parallel_lines import parallel_lines
from api.views.poster import poster
from api.views.poster_marks import VIRIDIS, relative
from api.views.study import study_plots
from hpsearch.importance import Importance
from hpsearch.objective import Objective
from hpsearch.space import CategoricalParam
from hpsearch.spec import parse_spec
from hpsearch.store.results import CurvePoint
from hpsearch.store.timeline import Span
from tests.conftest import digits_spec
from tests.unit.api.test_views import OBJECTIVE, SPACE, point, random_points

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _traces(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}g[@class='trace']")) or [
        g for g in root.iter(f"{SVG}g") if g.get("class") == "trace"
    ]


@dataclass(frozen=True)
class _Mark:
    x: float
    y: float
    id: str | None
    fill: str


def _marks(trace: ET.Element) -> list[_Mark]:
    """A trace's markers: each path holds several, "M x,y" at each centre, its trials' ids
    (``data-ids``) in the same order."""
    out = []
    for group in trace.iter(f"{SVG}g"):
        if group.get("class") != "points":
            continue
        for path in group.iter(f"{SVG}path"):
            centres = re.findall(r"M(-?[\d.]+),(-?[\d.]+)", path.get("d", ""))
            ids: list[str | None] = list(path.get("data-ids", "").split()) or [None] * len(centres)
            fill = path.get("fill") or group.get("fill", "")
            assert len(ids) == len(centres)
            out += [
                _Mark(float(x), float(y), i, fill) for (x, y), i in zip(centres, ids, strict=True)
            ]
    return out


def _texts(root: ET.Element, cls: str) -> list[tuple[float, float, str]]:
    """The labels of a group of texts (``xtick``, ``ytick``), with their positions."""
    group = next((g for g in root.iter(f"{SVG}g") if g.get("class") == cls), None)
    if group is None:
        return []
    return [
        (float(t.get("x", 0)), float(t.get("y", 0)), "".join(t.itertext()))
        for t in group.iter(f"{SVG}text")
    ]


def _clip_box(root: ET.Element) -> tuple[float, float, float, float]:
    rect = next(root.iter(f"{SVG}clipPath")).find(f"{SVG}rect")
    assert rect is not None
    x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
    return x, y, x + float(rect.get("width", 0)), y + float(rect.get("height", 0))


def test_a_history_marker_lands_where_the_axes_put_it() -> None:
    points = [point(n, v) for n, v in enumerate([0.2, 0.5, 0.4, 0.9, 0.7])]
    points.append(point(5, 0.95, latency=400))  # infeasible
    fig = history_figure(points, OBJECTIVE, best_id=1003)
    fig["layout"]["yaxis"]["range"] = [0, 1]
    fig["layout"]["xaxis"]["range"] = [0, 10]
    svg = poster(fig, 600, 300, key="h")
    root = _parse(svg)
    assert root.get("width") == "600" and root.get("viewBox") == "0 0 600 300"
    assert root.get("class") == "poster" and root.get("font-size") == "12"
    traces = _traces(root)
    drawn = [t for t in fig["data"] if t.get("visible", True) is True]
    assert len(traces) == len(drawn)
    for trace, element in zip(drawn, traces, strict=True):
        if "markers" in trace["mode"]:
            assert len(_marks(element)) == len(trace["x"])
    left, top, right, bottom = _clip_box(root)
    # The plot area is what the margins leave (the legend above fits in the top margin).
    margin = fig["layout"]["margin"]
    assert (left, right, bottom) == (margin["l"], 600 - margin["r"], 300 - margin["b"] - 2)
    feasible = next(
        el for t, el in zip(drawn, traces, strict=True) if t["name"].startswith("feasible")
    )
    by_id = {m.id: m for m in _marks(feasible)}
    trial = by_id[str(1001)]  # trial 1: x = 1, value 0.5
    assert trial.x == pytest.approx(left + (right - left) * 1 / 10, abs=0.06)
    assert trial.y == pytest.approx(bottom - (bottom - top) * 0.5, abs=0.06)
    # Each marker says its trial, for the page's click before Plotly has drawn.
    ids = {m.id for t in traces for m in _marks(t)}
    assert {str(p.id) for p in points} <= ids
    # The legend, and the step line drawn as horizontal-then-vertical.
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    names = ["".join(t.itertext()) for t in legend.iter(f"{SVG}text")]
    assert names[:3] == ["feasible (5)", "best feasible so far", "best feasible"]
    line = next(p for p in root.iter(f"{SVG}path") if p.get("class") == "line")
    assert re.fullmatch(r"M[\d.,]+(H[\d.]+V[\d.]+)+", line.get("d", ""))


def test_autorange_pads_markers_and_starts_at_zero_when_asked() -> None:
    points = [point(n, 0.1 * n) for n in range(1, 6)]
    fig = history_figure(points, OBJECTIVE, best_id=None)
    root = _parse(poster(fig, 500, 300))
    left, top, _, bottom = _clip_box(root)
    xs = {lab: x for x, _, lab in _texts(root, "xtick")}
    assert xs["0"] == pytest.approx(left, abs=0.06)  # rangemode tozero: 0 at the edge
    ys = sorted(m.y for t in _traces(root) for m in _marks(t))
    # The highest and lowest markers sit inside the plot, padded by 5 % and their size.
    pad = 0.05 * (bottom - top)
    assert top + pad + 3 < ys[0] < top + pad + 6  # a 7 px marker: about 4 px more
    assert bottom - pad - 6 < ys[-1] < bottom - pad - 3


def test_a_log_axis_with_dtick_1_has_powers_of_ten_evenly_spaced() -> None:
    fig = param_figure(SPACE["lr"], random_points(30), OBJECTIVE, None)
    assert fig["layout"]["xaxis"]["dtick"] == 1
    ticks = _texts(_parse(poster(fig, 430, 250)), "xtick")
    assert [label for _, _, label in ticks] == ["10−4", "10−3", "10−2", "10−1", "1"]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ticks)]
    assert max(gaps) - min(gaps) < 0.2 and gaps[0] > 50
    svg = poster(fig, 430, 250)
    assert '10<tspan dy="-.6em" font-size="70%">−4</tspan>' in svg  # a raised exponent
    # Plotly writes the powers of ten a size up (15 px for 12).
    assert svg.count('font-size="15">10<tspan') == 4


def test_log_axes_with_tick_values_show_them_and_d2_shows_one_two_five() -> None:
    points = random_points(30)
    hidden = param_figure(SPACE["hidden_units"], points, OBJECTIVE, None)
    labels = [lab for _, _, lab in _texts(_parse(poster(hidden, 430, 250)), "xtick")]
    assert labels == hidden["layout"]["xaxis"]["ticktext"] == ["16", "32", "64", "128", "256"]
    beta = param_figure(SPACE["beta"], points, OBJECTIVE, None)
    ticks = _texts(_parse(poster(beta, 430, 250)), "xtick")
    # Reversed range: 1 − β falls to the right, so β = 0.999 is rightmost.
    assert [lab for _, _, lab in ticks] == ["0.9", "0.99", "0.999"]
    assert ticks[0][0] < ticks[1][0] < ticks[2][0]
    narrow: dict[str, Any] = {"data": [{"x": [0.002, 0.04], "y": [1, 2], "mode": "markers"}]}
    narrow["layout"] = style.layout(
        xaxis=style.axis("x", type="log", range=[-3, -1], dtick="D2", exponentformat="power")
    )
    labels = [lab for _, _, lab in _texts(_parse(poster(narrow, 430, 250)), "xtick")]
    assert labels == ["10−3", "2", "5", "10−2", "2", "5", "10−1"]


def test_percent_ticks_and_separated_thousands() -> None:
    fig = edf_figure([point(n, 1000.0 * n) for n in range(40)], OBJECTIVE)
    assert fig is not None
    root = _parse(poster(fig, 800, 300))
    ys = [lab for _, _, lab in _texts(root, "ytick")]
    assert ys == ["0%", "20%", "40%", "60%", "80%", "100%"]
    xs = [lab for _, _, lab in _texts(root, "xtick")]
    assert "10,000" in xs and not any("e+" in x or x.endswith(".0") for x in xs)
    half: dict[str, Any] = {"data": [{"x": [0, 1], "y": [0, 1], "mode": "lines"}]}
    half["layout"] = style.layout(yaxis=style.axis("y", tickformat=".0%", range=[0, 1.02]))
    ys = [lab for _, _, lab in _texts(_parse(poster(half, 300, 200)), "ytick")]
    assert {"0%", "50%", "100%"} <= set(ys)


def test_hidden_traces_are_not_drawn_and_legendonly_ones_stay_in_the_legend() -> None:
    fig = {
        "data": [
            {"type": "scatter", "mode": "markers", "name": "a", "x": [1, 2], "y": [1, 2]},
            {"type": "scattergl", "mode": "markers", "name": "b", "x": [3], "y": [3]},
            {"mode": "markers", "name": "c", "x": [4], "y": [4], "visible": "legendonly"},
            {"mode": "markers", "name": "d", "x": [5], "y": [5], "visible": False},
        ],
        "layout": style.layout(),
    }
    root = _parse(poster(fig, 400, 300))
    assert [len(_marks(t)) for t in _traces(root)] == [2, 1]
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert ["".join(t.itertext()) for t in legend.iter(f"{SVG}text")] == ["a", "b", "c"]


def test_user_text_reads_literally_and_never_as_markup() -> None:
    choice = "<b>x</b>&amp;"
    param = CategoricalParam("act", (choice, "plain"))
    points = [
        point(n, 0.1 * n, params={"act": c}) for n, c in enumerate([choice, "plain", "plain"])
    ]
    fig = param_figure(param, points, OBJECTIVE, None)
    svg = poster(fig, 430, 250)
    root = _parse(svg)  # well-formed: nothing unescaped
    labels = [lab for _, _, lab in _texts(root, "xtick")]
    assert labels == ["<b>x</b>&amp;", "plain"]
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;&amp;amp;" in svg
    assert not list(root.iter(f"{SVG}b"))
    # A name Plotly gets unescaped reads as it is; an entity is decoded as Plotly decodes it.
    raw: dict[str, Any] = {
        "data": [
            {"mode": "markers", "name": "a < b & c", "x": [1], "y": [1]},
            {"mode": "markers", "name": "x&nbsp;y", "x": [2], "y": [2]},
        ],
        "layout": style.layout(),
    }
    legend = next(
        g for g in _parse(poster(raw, 400, 300)).iter(f"{SVG}g") if g.get("class") == "legend"
    )
    assert ["".join(t.itertext()) for t in legend.iter(f"{SVG}text")] == ["a < b & c", "x\xa0y"]


def test_contour_squares_take_viridis_in_order_of_value() -> None:
    points = random_points(300, seed=4)
    fig = contour_figure(SPACE["lr"], SPACE["hidden_units"], points, OBJECTIVE, bins=6)
    assert fig is not None
    trace = fig["data"][0]
    root = _parse(poster(fig, 620, 520))
    values = trace["marker"]["color"]
    fills = _fills_by_point(_marks(_traces(root)[0]), trace)
    assert len(fills) == len(values)
    low, high = min(values), max(values)
    # Maximizing: Viridis, dark for the lowest value, yellow for the highest.
    assert fills[values.index(low)] == VIRIDIS[0] and fills[values.index(high)] == VIRIDIS[-1]
    by_value = [f for _, f in sorted(zip(values, fills, strict=True))]
    greens = [int(f[3:5], 16) for f in by_value]  # Viridis's green rises with the value
    assert greens == sorted(greens)
    bar = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "colorbar")
    assert "dev_accuracy" in "".join(bar.itertext())
    # Minimizing: Viridis reversed, the lowest (best) value yellow.
    lowest = Objective("dev_accuracy", "minimize")
    fig = contour_figure(SPACE["lr"], SPACE["hidden_units"], points, lowest, bins=6)
    assert fig is not None
    fills = _fills_by_point(_marks(_traces(_parse(poster(fig, 620, 520)))[0]), fig["data"][0])
    assert fills[values.index(low)] == VIRIDIS[-1] and fills[values.index(high)] == VIRIDIS[0]


def _fills_by_point(marks: list[_Mark], trace: dict[str, Any]) -> list[str]:
    """Each square's fill in the trace's order: squares of one shade share a path, so they
    are matched by position (x grows to the right, y upwards, on both axes here)."""
    order = sorted(range(len(trace["x"])), key=lambda k: (trace["x"][k], trace["y"][k]))
    drawn = sorted(marks, key=lambda m: (round(m.x), -round(m.y)))
    fills = [""] * len(order)
    for k, mark in zip(order, drawn, strict=True):
        fills[k] = mark.fill
    return fills


def test_the_timeline_has_a_date_axis_and_a_row_per_worker() -> None:
    start = datetime(2026, 12, 3, 10, 0, 0)
    spans = [
        Span(k, "completed", f"w{k % 3}", start + timedelta(minutes=k), None) for k in range(12)
    ]
    fig = timeline_figure(spans, start + timedelta(minutes=30))
    assert fig is not None
    root = _parse(poster(fig, 1330, 300))
    rows = _texts(root, "ytick")
    assert [lab for _, _, lab in rows] == ["w0", "w1", "w2"]
    assert rows[0][1] > rows[1][1] > rows[2][1]  # the first category at the bottom
    _, top, _, bottom = _clip_box(root)
    # Bars alone, yet padded by 5 % of the height along y (Plotly pads only x's lines).
    assert rows[0][1] == pytest.approx(bottom - 0.05 * (bottom - top), abs=0.1)
    times = [lab for _, _, lab in _texts(root, "xtick")]
    assert 3 <= len(times) <= 10 and all(re.match(r"\d\d:\d\d", t) for t in times)
    assert "Dec 3, 2026" in times[0]  # the date under the first tick, as Plotly writes it


def test_importance_rows_go_bottom_up_with_error_bars_and_labels() -> None:
    result = Importance(
        scores={"lr": 0.5, "beta": 0.2, "layers": 0.05},
        errors={"lr": 0.05, "beta": 0.02, "layers": 0.01},
        n_trials=100,
        n_given=100,
    )
    fig = importance_figure(result, "dev_accuracy")
    root = _parse(poster(fig, 500, 300))
    rows = _texts(root, "ytick")
    assert [lab for _, _, lab in sorted(rows, key=lambda r: -r[1])] == ["layers", "beta", "lr"]
    svg = poster(fig, 500, 300)
    assert ">50%</text>" in svg and ">20%</text>" in svg
    assert 'stroke="#b8c0c8"' in svg  # the error bars


def test_curves_draw_dashes_stops_and_a_grouped_legend() -> None:
    steps = [CurvePoint(s, {"dev_loss": 1 / s, "train_loss": 0.9 / s}) for s in range(1, 7)]
    trials = [CurveTrial(1, 0, "completed", "best"), CurveTrial(2, 1, "pruned", "")]
    fig = curves_figure(trials, {1: steps, 2: steps[:3]}, "loss")
    svg = poster(fig, 800, 360)
    root = _parse(svg)
    # Train is dashed: Plotly's dash is three line widths (at least 3 px) on and off.
    assert 'stroke-dasharray="9,9"' in svg
    assert "other trials (dev)" in "".join(root.itertext())


def test_every_study_figure_renders() -> None:
    spec = parse_spec(digits_spec())
    points = random_points(120, seed=7)
    best = max((p for p in points if p.state == "completed" and p.feasible), key=_value)
    plots = study_plots(spec, points, best.id, limit=100)
    figures: list[Any] = [plots["history"], *plots["params"], plots["parallel_lines"]]
    figures += [plots["edf"], plots["importance"]]
    figures.append(contour_figure(SPACE["layers"], SPACE["beta"], points, OBJECTIVE))
    start = datetime(2026, 12, 3, 10)
    spans = [Span(k, "pruned", None, start + timedelta(seconds=k), None) for k in range(3)]
    figures.append(timeline_figure(spans, start + timedelta(seconds=9)))
    curves = {1: [CurvePoint(s, {"dev_loss": 1 / s}) for s in range(1, 4)]}
    figures.append(curves_figure([CurveTrial(1, 0, "failed", "best")], curves, "loss"))
    figures.append(curves_figure([], {}, None))
    for k, fig in enumerate(figures):
        assert fig is not None
        root = _parse(poster(fig, 620, 320, key=f"f{k}"))
        assert root.get("class") == "poster"
    ids = [
        el.get("id")
        for k, fig in enumerate(figures)
        for el in _parse(poster(fig, 620, 320, key=f"f{k}")).iter()
        if el.get("id")
    ]
    assert len(ids) == len(set(ids))  # several posters on one page share no id
    # WebGL parallel coordinates get a frame only.
    frame = _parse(poster(plots["parallel"], 1330, 360))
    assert not _traces(frame)


def test_a_600_point_scatter_is_small() -> None:
    fig = param_figure(SPACE["lr"], random_points(600, seed=2), OBJECTIVE, None)
    svg = poster(fig, 430, 250)
    assert len(svg) < 60 * 600
    root = _parse(svg)
    paths = [p.get("d", "") for t in _traces(root) for p in t.iter(f"{SVG}path")]
    coordinates = [c for d in paths for pair in re.findall(r"M([^,]+),([^m]+)m", d) for c in pair]
    assert len(coordinates) > 1000 and all(re.fullmatch(r"-?\d+(\.\d)?", c) for c in coordinates)
    # One path per trace, not an element per marker (what a browser lays out and paints).
    assert svg.count("<path") < 30


def _value(p: Any) -> float:
    return float(p.value) if p.value is not None and math.isfinite(p.value) else -1.0


def test_history_zoom_buttons_are_drawn_above_the_plot() -> None:
    # The better half squashed at the top of the axis: the view starts zoomed, with buttons.
    points = [point(n, 0.99 + 0.0001 * n if n % 2 else 0.01 * n) for n in range(60)]
    fig = history_figure(points, OBJECTIVE, best_id=None)
    assert fig["layout"].get("updatemenus")
    root = _parse(poster(fig, 1330, 400))
    menu = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "menu")
    assert ["".join(t.itertext()) for t in menu.iter(f"{SVG}text")] == [
        "zoom to the top",
        "all trials",
    ]
    _, top, right, _ = _clip_box(root)
    boxes = [(float(r.get("x", 0)), float(r.get("y", 0))) for r in menu.iter(f"{SVG}rect")]
    assert all(y < top for _, y in boxes) and boxes[0][0] < boxes[1][0] < right
    low, high = fig["layout"]["yaxis"]["range"]
    ys = [float(lab) for _, _, lab in _texts(root, "ytick")]
    assert low <= min(ys) and max(ys) <= high  # the zoomed range, not all trials


def test_parallel_lines_have_their_labels_on_top_and_axes_as_shapes() -> None:
    points = random_points(40)
    plots = study_plots(parse_spec(digits_spec()), points, None)
    fig = plots["parallel_lines"]
    root = _parse(poster(fig, 1330, 360))
    _, top, _, _ = _clip_box(root)
    labels = _texts(root, "xtick")
    assert [lab for _, _, lab in labels] == [
        html.unescape(t) for t in fig["layout"]["xaxis"]["ticktext"]
    ]
    assert all(y < top for _, y, _ in labels)
    assert not _texts(root, "ytick")  # the y axis is hidden
    axes = [p for p in root.iter(f"{SVG}path") if p.get("stroke") == "#5b6570"]
    assert len(axes) == len(labels)
    bar = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "colorbar")
    ticks = [float(t.text or "") for t in list(bar.iter(f"{SVG}text"))[1:]]
    assert len(ticks) >= 3 and ticks == sorted(ticks)
    # The bar reads as the lines are coloured: maximizing, the best (yellow) on top; and
    # the other way round when minimizing (``reversescale``).
    stops = [s.get("stop-color") for s in root.iter(f"{SVG}stop")]
    assert (stops[0], stops[-1]) == (VIRIDIS[-1], VIRIDIS[0])
    lowest = parallel_lines(plots["parallel"], maximize=False)
    assert lowest is not None
    stops = [s.get("stop-color") for s in _parse(poster(lowest, 1330, 360)).iter(f"{SVG}stop")]
    assert (stops[0], stops[-1]) == (VIRIDIS[0], VIRIDIS[-1])


def test_shapes_in_data_and_paper_coordinates_below_or_above_the_traces() -> None:
    fig: dict[str, Any] = {
        "data": [{"mode": "markers", "x": [0, 10], "y": [0, 1]}],
        "layout": style.layout(
            xaxis=style.axis("x", range=[0, 10]),
            yaxis=style.axis("y", range=[0, 1]),
            shapes=[
                {
                    "type": "rect",
                    "xref": "x",
                    "yref": "paper",
                    "x0": 2,
                    "x1": 4,
                    "y0": 0,
                    "y1": 1,
                    "fillcolor": "rgba(0,114,178,0.1)",
                    "line": {"width": 0},
                    "layer": "below",
                },
                {"type": "line", "x0": 0, "x1": 10, "y0": 0.5, "y1": 0.5, "line": {"dash": "dot"}},
            ],
        ),
    }
    svg = poster(fig, 400, 300)
    root = _parse(svg)
    left, top, right, bottom = _clip_box(root)
    rect = next(r for r in root.iter(f"{SVG}rect") if r.get("fill") == "rgba(0,114,178,0.1)")
    assert float(rect.get("x", 0)) == pytest.approx(left + 0.2 * (right - left), abs=0.06)
    assert float(rect.get("width", 0)) == pytest.approx(0.2 * (right - left), abs=0.1)
    assert (float(rect.get("y", 0)), float(rect.get("height", 0))) == pytest.approx(
        (top, bottom - top), abs=0.06
    )
    assert rect.get("stroke") is None  # no outline at width 0
    middle = _n_str((top + bottom) / 2)
    line = f'<path d="M{_n_str(left)},{middle}L{_n_str(right)},{middle}" fill="none"'
    # The region under the points, the line over them.
    assert svg.index("rgba(0,114,178,0.1)") < svg.index('class="trace"') < svg.index(line)


def _n_str(v: float) -> str:
    text = f"{v:.1f}"
    return text.removesuffix(".0")


def test_a_symbols_outline_follows_any_centre() -> None:
    """Relative after a move from the centre, a closed subpath and a second move included."""
    assert relative("M3.5,0A3.5,3.5 0 1,1 0,-3.5A3.5,3.5 0 0,1 3.5,0ZM2.5,2.5L-2.5,-2.5") == (
        "m3.5,0a3.5,3.5 0 1,1 -3.5,-3.5a3.5,3.5 0 0,1 3.5,3.5zm-1,2.5l-5,-5"
    )
    assert relative("M3.5,3.5H-3.5V-3.5H3.5Z") == "m3.5,3.5h-7v-7h7z"
