"""Study figures as Plotly JSON: optimization history, one scatter per parameter on its own
scale, parallel coordinates, importance. Pure: trial rows in, ``{"data", "layout"}`` out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from api.views import isolines, smoothing, style
from api.views.sampling import best_so_far
from hpsearch.importance import Importance
from hpsearch.objective import Objective
from hpsearch.space import CategoricalParam, IntParam, Param, ParamValue
from hpsearch.store.results import TrialPoint
from hpsearch.store.timeline import Span

Figure = style.Figure


def history_figure(
    points: Sequence[TrialPoint],
    objective: Objective,
    best_id: int | None,
    line_from: Sequence[TrialPoint] | None = None,
) -> Figure:
    """Each trial's value by trial number, the best-so-far line, infeasible trials apart.

    ``points`` are drawn; the line is computed from ``line_from`` (all trials) when given, so
    it stays exact when ``points`` is a downsampled subset.
    """
    every = line_from if line_from is not None else points
    line = best_so_far(every, objective.direction)
    data = point_traces(
        points, objective, best_id, lambda p: p.number, totals=group_counts(every, objective)
    )
    if line:
        # Over the cloud, under the best trial's star.
        data.insert(
            len(data) - 1 if data and data[-1]["name"] == "best feasible" else len(data),
            {
                "type": data[0]["type"] if data else "scatter",
                "mode": "lines",
                "name": "best feasible so far",
                "x": [n for n, _ in line],
                "y": [v for _, v in line],
                "line": {"shape": "hv", "color": style.BEST, "width": 2.5},
                "hoverinfo": "skip",
            },
        )
    layout = style.layout(
        xaxis=style.axis("trial number", rangemode="tozero"),
        yaxis=style.axis(objective.metric),
        margin={"l": 60, "r": 16, "t": 36, "b": 44},
    )
    top = top_range(every, objective)
    if top is not None:
        # Where the search happens is often a thin band at the top of a 0–1 axis: the view
        # starts zoomed to it, and a button gives every trial back.
        layout["yaxis"]["range"] = top
        layout["updatemenus"] = [
            {
                "type": "buttons",
                "direction": "left",
                "showactive": True,
                "active": 0,
                "x": 1,
                "xanchor": "right",
                "y": 1.02,
                "yanchor": "bottom",
                "pad": {"t": 0, "r": 0},
                "font": {"size": 11},
                "buttons": [
                    {
                        "label": "zoom to the top",
                        "method": "relayout",
                        "args": [{"yaxis.range": top, "yaxis.autorange": False}],
                    },
                    {
                        "label": "all trials",
                        "method": "relayout",
                        "args": [{"yaxis.autorange": True}],
                    },
                ],
            }
        ]
    return {"data": data, "layout": layout}


def top_range(points: Sequence[TrialPoint], objective: Objective) -> list[float] | None:
    """The y range of the better half of the completed trials (to the best one), padded;
    ``None`` when that half already spans a third of the axis or more (nothing squashed)."""
    values = sorted(
        p.value
        for p in points
        if p.state == "completed" and p.value is not None and math.isfinite(p.value)
    )
    if len(values) < 20:
        return None
    lowest, highest = values[0], values[-1]
    middle = values[len(values) // 2]
    if objective.direction == "maximize":
        a, b = middle, highest
    else:
        a, b = lowest, middle
    if highest - lowest <= 0 or (b - a) > (highest - lowest) / 3:
        return None
    pad = 0.08 * (b - a) if b > a else 0.01 * max(abs(b), 1e-9)
    return [a - pad, b + pad]


def param_figures(
    params: Sequence[Param], points: Sequence[TrialPoint], objective: Objective, best_id: int | None
) -> list[Figure]:
    """One scatter per parameter against the objective, each on the parameter's own scale."""
    return [param_figure(p, points, objective, best_id) for p in params]


def param_figure(
    param: Param, points: Sequence[TrialPoint], objective: Objective, best_id: int | None
) -> Figure:
    x_of, xaxis = _param_axis(param)
    name = param.name
    inside = [p for p in points if name in p.params and param.contains(p.params[name])]
    levels = _levels(param)
    if levels is not None:
        # A few discrete values: spread each one's points sideways (deterministically, by
        # trial number) so a stack of thousands reads as a distribution, not a line.
        def x_at(p: TrialPoint) -> float:
            return _level(param, p.params[name]) + _jitter(p.number)

        def label(p: TrialPoint) -> str:
            return f"{name} = {style.plot_text(p.params[name])}"

        data = point_traces(inside, objective, best_id, x_at, label)
    else:
        data = point_traces(inside, objective, best_id, lambda p: x_of(p.params[name]))
    for trace in data:
        trace["showlegend"] = False
    return {
        "data": data,
        "layout": style.layout(
            xaxis=xaxis,
            yaxis=style.axis(objective.metric),
            margin={"l": 56, "r": 12, "t": 12, "b": 44},
            showlegend=False,
            # What the page needs to draw coarse-to-fine regions over this axis; a
            # categorical's choice k (and an int's k-th value) sits at x = k.
            meta={
                "param": param.name,
                "scale": param.scale,
                "kind": param.kind,
                "choices": [str(c) for c in levels] if levels is not None else [],
            },
        ),
    }


_MAX_LEVELS = 12


def _levels(param: Param) -> list[ParamValue] | None:
    """The values of a parameter drawn as evenly spaced levels: a categorical's choices, or
    a linear int's values when there are few of them."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, IntParam) and param.scale == "linear":
        values: list[ParamValue] = list(range(param.low, param.high + 1, param.step))
        return values if len(values) <= _MAX_LEVELS else None
    return None


def _level(param: Param, value: ParamValue) -> int:
    if isinstance(param, CategoricalParam):
        return param.index(value)
    assert isinstance(param, IntParam) and isinstance(value, int)
    return (value - param.low) // param.step


def _jitter(number: int) -> float:
    # The golden-ratio sequence spreads consecutive trials evenly over [-0.3, 0.3).
    return ((number * 0.6180339887) % 1.0 - 0.5) * 0.6


def _param_axis(param: Param) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """How a parameter's values map to x, and its axis: the whole search range on the
    parameter's own scale, so where the good trials sit within the space is visible."""
    levels = _levels(param)
    if levels is not None:
        return float, style.axis(
            param.name,
            tickvals=list(range(len(levels))),
            ticktext=[style.plot_text(v) for v in levels],
            range=[-0.5, len(levels) - 0.5],
        )
    assert not isinstance(param, CategoricalParam)
    low, high = float(param.low), float(param.high)
    if param.scale == "log":
        # Plotly gives log-axis ranges in log10 units.
        span = _padded(math.log10(low), math.log10(high))
        if isinstance(param, IntParam):
            # Whole numbers only: Plotly's own log ticks read "2 3 4 … 10² 2" here.
            ticks = int_ticks(param)
            return float, style.axis(
                f"{param.name} (log scale)",
                type="log",
                range=span,
                tickvals=ticks,
                ticktext=[f"{t:,}" for t in ticks],
            )
        return float, style.axis(
            f"{param.name} (log scale)",
            type="log",
            exponentformat="power",
            range=span,
            # Only the powers of ten once the range spans decades; else 1, 2, 5 between them.
            dtick=1 if span[1] - span[0] >= 2 else "D2",
        )
    if param.scale == "reverse_log":
        # 1/(1-β) is the averaging window: what matters is how close β is to 1, so 1-β on a
        # log axis spreads 0.9, 0.99 and 0.999 evenly. High β (small 1-β) on the right; the
        # ticks are labelled in β itself.
        span = _padded(math.log10(1 - low), math.log10(1 - high))
        betas = nice_ticks(param)
        return (lambda v: 1.0 - float(v)), style.axis(
            f"{param.name} (log scale of 1 − {param.name})",
            type="log",
            range=span,
            tickvals=[1 - t for t in betas],
            ticktext=[f"{t:g}" for t in betas],
        )
    if isinstance(param, IntParam):
        ticks = int_ticks(param)
        return float, style.axis(
            param.name,
            range=_padded(low, high),
            tickvals=ticks,
            ticktext=[f"{t:,}" for t in ticks],
        )
    return float, style.axis(param.name, range=_padded(low, high))


def int_ticks(param: IntParam, most: int = 8) -> list[int]:
    """Whole-number ticks for an integer parameter, on its grid (low + k·step): powers of two
    on a log axis where at least three fit, else 1–2–5 steps; the bounds when they do not
    crowd a tick."""
    low, high = param.low, param.high
    grid = max(1, param.step)
    if param.scale == "log" and low > 0:
        twos = [2**k for k in range(math.ceil(math.log2(low)), math.floor(math.log2(high)) + 1)]
        candidates = twos if 3 <= len(twos) <= most else _one_two_five(low, high, log=True)
        if len(candidates) > most:  # decades apart: the powers of ten
            candidates = [t for t in candidates if str(t).strip("0") == "1"]
    else:
        candidates = _one_two_five(low, high, log=False, most=most)
    ticks = sorted({t for t in candidates if low <= t <= high and (t - low) % grid == 0})
    if len(ticks) > most:
        ticks = ticks[:: math.ceil(len(ticks) / most)]
    for bound in (low, high):
        if all(_apart(bound, t, param.scale == "log", high - low) for t in ticks):
            ticks.append(bound)
    return sorted(set(ticks))


def _one_two_five(low: int, high: int, *, log: bool, most: int = 8) -> list[int]:
    if log:
        out = []
        for k in range(0, len(str(high)) + 1):
            out += [m * 10**k for m in (1, 2, 5)]
        return [t for t in out if low <= t <= high]
    span = max(1, high - low)
    step = next(s for s in _steps() if span / s <= most)
    first = math.ceil(low / step) * step
    return list(range(first, high + 1, step))


def _steps() -> list[int]:
    return [m * 10**k for k in range(0, 10) for m in (1, 2, 5)]


def _apart(a: int, b: int, log: bool, span: int) -> bool:
    """Whether two ticks are far enough apart not to print on top of each other."""
    if log:
        return abs(math.log10(a) - math.log10(b)) > 0.12
    return abs(a - b) > span * 0.08


def _padded(a: float, b: float, fraction: float = 0.04) -> list[float]:
    pad = (b - a) * fraction if b != a else 0.5
    return [a - pad, b + pad]


def point_traces(
    points: Sequence[TrialPoint],
    objective: Objective,
    best_id: int | None,
    x_of: Callable[[TrialPoint], Any],
    label_of: Callable[[TrialPoint], str] | None = None,
    totals: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Feasible, infeasible (one trace per set of broken constraints) and pruned trials,
    each with its own colour *and* marker, and a star on the best feasible trial.

    ``label_of`` names the x value in the hover text, where x itself is not the value;
    ``totals`` (group → trials in the whole study) makes a legend entry say "N of M" when
    only a sample of a group is drawn.
    """
    groups: dict[str, list[TrialPoint]] = {}
    notes: dict[int, str] = {}
    for p in points:
        found = group_of(p, objective)
        if found is None:
            continue
        key, note = found
        notes[p.id] = f"{note} · {label_of(p)}" if label_of is not None else note
        groups.setdefault(key, []).append(p)
    hover = f"%{{text}}<br>{objective.metric} = %{{y:{style.NUMBER}}}"
    hover += "<extra></extra>" if label_of is not None else "<br>x = %{x}<extra></extra>"
    # Past a thousand points SVG markers cost more to draw than WebGL's; one type for every
    # trace of a plot, so the drawing order below holds (WebGL draws above SVG).
    kind = "scattergl" if len(notes) > GL_POINTS else "scatter"
    # Drawn in reverse of the legend's order: pruned first, feasible last, on top, so the
    # infeasible cloud never hides the feasible frontier.
    order = sorted(groups, key=_group_order)
    traces = [
        {
            **_marker_trace(key, groups[key], x_of, notes, hover, _marker(key), kind),
            "name": _legend_name(key, len(groups[key]), (totals or {}).get(key, 0)),
            "legendrank": 1000 + rank,
        }
        for rank, key in reversed(list(enumerate(order)))
    ]
    best = [p for p in points if p.id == best_id and p.id in notes]
    if best:
        traces.append(_marker_trace("best feasible", best, x_of, notes, hover, _BEST_MARKER, kind))
    return traces


GL_POINTS = 1000
"""A plot drawing more points than this draws them with WebGL (scattergl)."""

_BEST_MARKER = {
    "symbol": "star",
    "size": 17,
    "color": style.BEST,
    "line": {"color": "#ffffff", "width": 1},
}


def group_of(p: TrialPoint, objective: Objective) -> tuple[str, str] | None:
    """The legend group a trial is drawn in, and its hover note; ``None`` without a value."""
    if p.value is None or not math.isfinite(p.value):
        return None
    if p.state == "pruned":
        return "pruned", f"pruned at step {p.last_step}" if p.last_step is not None else "pruned"
    if p.feasible:
        return "feasible", "feasible"
    broken = objective.evaluate(p.metrics).broken or ("a constraint",)
    key = "broke " + ", ".join(broken)
    return key, key


def group_counts(points: Sequence[TrialPoint], objective: Objective) -> dict[str, int]:
    """How many trials each legend group holds: the legend's "of N" when a sample is drawn."""
    counts: dict[str, int] = {}
    for p in points:
        found = group_of(p, objective)
        if found is not None:
            counts[found[0]] = counts.get(found[0], 0) + 1
    return counts


def _group_order(key: str) -> tuple[int, str]:
    return ({"feasible": 0, "pruned": 2}.get(key, 1), key)


def _marker(key: str) -> dict[str, Any]:
    if key == "feasible":
        return {"symbol": "circle", "size": 7, "color": style.FEASIBLE, "opacity": 0.75}
    if key == "pruned":
        return {
            "symbol": "diamond-open",
            "size": 7,
            "color": style.PRUNED,
            "line": {"width": 1.5},
        }
    return {"symbol": "x-thin-open", "size": 8, "color": style.INFEASIBLE, "line": {"width": 2}}


def _legend_name(key: str, shown: int, total: int) -> str:
    if total > shown:
        return f"{key} ({shown:,} of {total:,} shown)"
    return f"{key} ({shown:,})"


def _marker_trace(
    name: str,
    members: Sequence[TrialPoint],
    x_of: Callable[[TrialPoint], Any],
    notes: dict[int, str],
    hover: str,
    marker: dict[str, Any],
    kind: str,
) -> dict[str, Any]:
    return {
        "type": kind,
        "mode": "markers",
        "name": f"{name} ({len(members)})" if name != "best feasible" else name,
        "x": [x_of(p) for p in members],
        "y": [p.value for p in members],
        "customdata": [p.id for p in members],
        "text": [f"trial {p.number} · {notes.get(p.id, p.state)}" for p in members],
        "hovertemplate": hover,
        "marker": marker,
    }


_STATE_COLOURS = {
    "completed": style.FEASIBLE,
    "pruned": style.PRUNED,
    "failed": style.FAILED,
    "running": style.BEST,
}


def timeline_figure(spans: Sequence[Span], now: datetime) -> Figure | None:
    """One bar per trial from its start to its end (to ``now`` while it runs), a row per
    worker, coloured by state: where workers sat idle, and which states took the time."""
    if not spans:
        return None
    by_state: dict[str, list[Span]] = {}
    for span in spans:
        by_state.setdefault(span.state, []).append(span)
    workers = sorted({s.worker_id or "—" for s in spans})
    data = []
    for state in sorted(
        by_state, key=lambda k: list(_STATE_COLOURS).index(k) if k in _STATE_COLOURS else 9
    ):
        members = by_state[state]
        xs: list[str | None] = []
        ys: list[str | None] = []
        text: list[str | None] = []
        for s in members:
            end = s.finished_at or now
            xs += [s.started_at.isoformat(), end.isoformat(), None]
            worker = s.worker_id or "—"
            ys += [worker, worker, None]
            label = f"trial {s.number} · {state} · {(end - s.started_at).total_seconds():,.1f} s"
            text += [label, label, None]
        data.append(
            {
                # SVG at any count: a trace's bars are one path, cheaper than setting up a
                # WebGL context where there is no GPU.
                "type": "scatter",
                "mode": "lines",
                "name": f"{state} ({len(members):,})",
                "x": xs,
                "y": ys,
                "text": text,
                "line": {"color": _STATE_COLOURS.get(state, style.MUTED), "width": 8},
                "hovertemplate": "%{text}<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": style.layout(
            xaxis=style.axis("time (UTC)", type="date"),
            yaxis=style.axis(
                "worker", type="category", categoryorder="array", categoryarray=workers
            ),
            margin={"l": 60, "r": 16, "t": 36, "b": 44},
            meta={"trials": len(spans), "workers": len(workers)},
        ),
    }


def compare_figures(
    studies: Sequence[tuple[str, Objective, Sequence[TrialPoint]]],
) -> tuple[Figure, Figure]:
    """Several studies on one page: each one's best-so-far line by trial number, and each
    one's EDF, one colour per study (``studies``: name, objective, ended trials)."""
    lines, edfs = [], []
    for k, (name, objective, points) in enumerate(studies):
        colour = style.SERIES[k % len(style.SERIES)]
        label = f"{name} ({objective.metric})"
        steps = best_so_far(points, objective.direction)
        lines.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label,
                "x": [n for n, _ in steps],
                "y": [v for _, v in steps],
                "line": {"shape": "hv", "color": colour, "width": 2.5},
                "hovertemplate": f"{style.plot_text(name)} · after trial %{{x}}:"
                f" %{{y:{style.NUMBER}}}<extra></extra>",
            }
        )
        edf = edf_figure(points, objective)
        if edf is not None:
            trace = edf["data"][0]
            edfs.append({**trace, "name": label, "line": {**trace["line"], "color": colour}})
    metrics = sorted({objective.metric for _, objective, _ in studies})
    metric = " / ".join(metrics)
    legend = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0}
    history = {
        "data": lines,
        "layout": style.layout(
            xaxis=style.axis("trial number", rangemode="tozero"),
            yaxis=style.axis(f"best feasible {metric} so far"),
            legend=legend,
        ),
    }
    distribution = {
        "data": edfs,
        "layout": style.layout(
            xaxis=style.axis(metric),
            yaxis=style.axis("share of trials at or below", tickformat=".0%", range=[0, 1.02]),
            legend=legend,
        ),
    }
    return history, distribution


CONTOUR_BINS = 32


def contour_figure(
    px: Param,
    py: Param,
    points: Sequence[TrialPoint],
    objective: Objective,
    bins: int = CONTOUR_BINS,
) -> Figure | None:
    """The objective over two parameters, each on its own scale, interpolated between the
    feasible completed trials: a grid even in each parameter's unit scale (so log-spaced on a
    log parameter, one cell per value of a categorical or a few-valued int), each cell the
    kernel-weighted mean of the trials near it (api/views/smoothing.py), drawn as squares
    coloured by it; cells with no trial near stay empty. ``None`` with fewer than two trials."""
    sizes = []
    for param in (px, py):
        levels = _levels(param)
        sizes.append(len(levels) if levels is not None else bins)
    sums = np.zeros(sizes)
    counts = np.zeros(sizes)
    for p in points:
        if not (p.state == "completed" and p.feasible and p.value is not None):
            continue
        if not math.isfinite(p.value) or px.name not in p.params or py.name not in p.params:
            continue
        if not (px.contains(p.params[px.name]) and py.contains(p.params[py.name])):
            continue
        i = _cell(px, p.params[px.name], sizes[0])
        j = _cell(py, p.params[py.name], sizes[1])
        sums[i, j] += p.value
        counts[i, j] += 1
    n = int(counts.sum())
    if n < 2:
        return None
    sigmas = [
        0.0 if _levels(param) is not None else smoothing.bandwidth(size, n)
        for param, size in zip((px, py), sizes, strict=True)
    ]
    means, weights = smoothing.smooth(sums, counts, (sigmas[0], sigmas[1]))
    axes = []
    centres = []
    for param, size in zip((px, py), sizes, strict=True):
        to_x, axis = _param_axis(param)
        axes.append(axis)
        if _levels(param) is not None:
            centres.append([float(k) for k in range(size)])
        else:
            centres.append([to_x(param.from_unit((k + 0.5) / size)) for k in range(size)])
    keys = [(i, j) for i in range(sizes[0]) for j in range(sizes[1]) if math.isfinite(means[i, j])]
    scale = "Viridis" if objective.direction == "maximize" else "Viridis_r"
    known = means[np.isfinite(means)]
    marks = isolines.levels(float(known.min()), float(known.max()))
    logs = [axis.get("type") == "log" for axis in axes]
    xs: list[float | None] = []
    ys: list[float | None] = []
    for level in marks:
        for (i0, j0), (i1, j1) in isolines.isolines(means, level):
            xs += [isolines.along(centres[0], i0, logs[0]), isolines.along(centres[0], i1, logs[0])]
            ys += [isolines.along(centres[1], j0, logs[1]), isolines.along(centres[1], j1, logs[1])]
            xs.append(None)
            ys.append(None)
    return {
        "data": [
            {
                # SVG: at most CONTOUR_BINS² squares, fewer nodes than a WebGL context costs.
                "type": "scatter",
                "mode": "markers",
                "x": [centres[0][i] for i, _ in keys],
                "y": [centres[1][j] for _, j in keys],
                # Trials in the cell, and the kernel weight of those near it.
                "customdata": [[int(counts[k]), round(float(weights[k]), 1)] for k in keys],
                "marker": {
                    "symbol": "square",
                    "size": 12,  # the page sizes a square to its cell once drawn
                    "color": [float(means[k]) for k in keys],
                    "colorscale": scale,
                    "showscale": True,
                    "colorbar": {"title": {"text": objective.metric}, "thickness": 12},
                },
                "hovertemplate": f"≈ {objective.metric} %{{marker.color:{style.NUMBER}}}"
                " (%{customdata[0]} trials in the cell, weight %{customdata[1]} near)"
                "<extra></extra>",
            },
            {
                # Iso-lines at the colour bar's round values, over the squares.
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ys,
                "line": {"color": "rgba(255,255,255,0.8)", "width": 1},
                "hoverinfo": "skip",
            },
        ],
        "layout": style.layout(
            xaxis=axes[0],
            yaxis=axes[1],
            margin={"l": 60, "r": 16, "t": 12, "b": 44},
            showlegend=False,
            meta={
                "bins": sizes,
                "trials": n,
                "x": px.name,
                "y": py.name,
                "smoothing": sigmas,
                "levels": marks,
            },
        ),
    }


def _cell(param: Param, value: ParamValue, size: int) -> int:
    if _levels(param) is not None:
        return _level(param, value)
    return min(int(param.to_unit(value) * size), size - 1)


EDF_STEPS = 400


def edf_figure(points: Sequence[TrialPoint], objective: Objective) -> Figure | None:
    """The empirical distribution of the objective over feasible completed trials: for each
    value, the share of trials at or below it (Optuna's EDF plot). At most ``EDF_STEPS``
    steps, taken evenly by rank, so 100 000 trials draw as quickly as 400; ``None`` below two
    trials."""
    values = sorted(
        p.value
        for p in points
        if p.state == "completed" and p.feasible and p.value is not None and math.isfinite(p.value)
    )
    n = len(values)
    if n < 2:
        return None
    ranks = sorted({round(i * (n - 1) / (EDF_STEPS - 1)) for i in range(EDF_STEPS)})
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": [values[r] for r in ranks],
                "y": [(r + 1) / n for r in ranks],
                "line": {"shape": "hv", "color": style.FEASIBLE, "width": 2},
                "hovertemplate": f"%{{y:.1%}} of trials at or below {objective.metric} ="
                f" %{{x:{style.NUMBER}}}<extra></extra>",
            }
        ],
        "layout": style.layout(
            xaxis=style.axis(objective.metric),
            yaxis=style.axis("share of trials at or below", tickformat=".0%", range=[0, 1.02]),
            margin={"l": 60, "r": 16, "t": 12, "b": 44},
            showlegend=False,
            meta={"trials": n},
        ),
    }


def parallel_figure(
    params: Sequence[Param],
    points: Sequence[TrialPoint],
    objective: Objective,
) -> Figure | None:
    """Parallel coordinates over parameters (each on its own scale) and metrics, one line per
    completed trial, coloured by the objective; ``None`` with fewer than two trials."""
    metrics = list(dict.fromkeys([c.metric for c in objective.constraints]))
    rows = [
        p
        for p in points
        if p.state == "completed"
        and p.value is not None
        and all(p.metrics.get(m) is not None for m in metrics)
        and all(param.name in p.params for param in params)
    ]
    if len(rows) < 2:
        return None
    dims = [_param_dimension(param, rows) for param in params]
    # A satisficing metric's axis says its threshold: where feasible ends.
    limits: dict[str, list[str]] = {}
    for c in objective.constraints:
        limits.setdefault(c.metric, []).append(c.describe().removeprefix(c.metric).strip())
    dims += [
        {
            "label": f"{m} ({', '.join(limits[m])})" if m in limits else m,
            "values": [p.metrics[m] for p in rows],
        }
        for m in metrics
        if m != objective.metric
    ]
    dims.append(
        {
            "label": "feasible",
            "values": [1 if p.feasible else 0 for p in rows],
            "tickvals": [0, 1],
            "ticktext": ["no", "yes"],
            "range": [-0.1, 1.1],
        }
    )
    values = [p.value for p in rows]
    dims.append({"label": objective.metric, "values": values})
    scale = "Viridis" if objective.direction == "maximize" else "Viridis_r"
    return {
        "data": [
            {
                "type": "parcoords",
                "dimensions": dims,
                "line": {
                    "color": values,
                    "colorscale": scale,
                    "showscale": True,
                    "colorbar": {"title": {"text": objective.metric}, "thickness": 12},
                },
                "labelfont": {"size": 12},
                "tickfont": {"size": 11},
            }
        ],
        "layout": style.layout(
            margin={"l": 60, "r": 40, "t": 56, "b": 24}, meta={"lines": len(rows)}
        ),
    }


def _param_dimension(param: Param, rows: Sequence[TrialPoint]) -> dict[str, Any]:
    raw: list[ParamValue] = [p.params[param.name] for p in rows]
    if isinstance(param, CategoricalParam):
        return {
            "label": param.name,
            "values": [param.to_unit(v) if param.contains(v) else 0.5 for v in raw],
            "tickvals": [param.to_unit(c) for c in param.choices],
            # Parallel coordinates draw tick text as plain SVG text, unlike other axes.
            "ticktext": [str(c) for c in param.choices],
            "range": [0, 1],
        }
    if param.scale == "linear":
        dim: dict[str, Any] = {"label": param.name, "values": [float(v) for v in raw]}
        if isinstance(param, IntParam):
            # Whole numbers: Plotly's own ticks would read 1.5 and 2.5.
            whole = int_ticks(param)
            dim.update(tickvals=whole, ticktext=[f"{t:,}" for t in whole])
            dim["range"] = [param.low, param.high]
        return dim
    # Log-like scales: the axis is the parameter's unit interval, labelled with real values,
    # so 1e-4..1e-3 takes as much room as 0.1..1.
    ticks: list[int] | list[float] = (
        int_ticks(param) if isinstance(param, IntParam) else nice_ticks(param)
    )
    return {
        "label": param.name + (" (1−β log)" if param.scale == "reverse_log" else " (log)"),
        "values": [_unit_or_edge(param, v) for v in raw],
        "tickvals": [param.to_unit(t) for t in ticks],
        "ticktext": [f"{t:g}" for t in ticks],
        "range": [0, 1],
    }


def _unit_or_edge(param: Param, value: ParamValue) -> float:
    try:
        return param.to_unit(value)
    except ValueError:
        return 0.0


def nice_ticks(param: Param) -> list[float]:
    """Round values for a log or reverse-log axis: the bounds and the powers of ten between
    them (for reverse_log, 0.9, 0.99, 0.999 …)."""
    if isinstance(param, CategoricalParam):
        return []
    low, high = float(param.low), float(param.high)
    ticks = {low, high}
    if param.scale == "log":
        for k in range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1):
            ticks.add(10.0**k)
    elif param.scale == "reverse_log":
        top = -math.log10(1 - high)
        bottom = -math.log10(1 - low) if low < 1 else top
        for k in range(math.ceil(bottom), math.floor(top) + 1):
            ticks.add(1 - 10.0**-k)
    ordered = sorted(t for t in ticks if low <= t <= high)
    # Drop a bound that would print on top of a power of ten.
    return [
        t
        for i, t in enumerate(ordered)
        if i == 0 or param.to_unit(t) - param.to_unit(ordered[i - 1]) > 0.04
    ]


def importance_figure(result: Importance, metric: str) -> Figure:
    """A dot per parameter on a line from zero (the partial Plotly bundle has no bar trace)."""
    ranked = list(reversed(result.ranked()))  # Plotly lists categories bottom-up
    names = [name for name, _ in ranked]
    stems: dict[str, list[Any]] = {"x": [], "y": []}
    for name, score in ranked:
        stems["x"] += [0, score, None]
        stems["y"] += [name, name, None]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                **stems,
                "line": {"color": style.FEASIBLE, "width": 6},
                "hoverinfo": "skip",
            },
            {
                "type": "scatter",
                "mode": "markers+text",
                "x": [score for _, score in ranked],
                "y": names,
                "text": [f"{score:.0%}" for _, score in ranked],
                "textposition": "top center",
                "cliponaxis": False,
                "marker": {"color": style.FEASIBLE, "size": 9},
                "error_x": {
                    "type": "data",
                    "array": [result.errors.get(name, 0.0) for name, _ in ranked],
                    "visible": bool(result.errors),
                    "color": style.MUTED,
                    "thickness": 2,
                },
                "customdata": [result.errors.get(name, 0.0) for name, _ in ranked],
                "hovertemplate": "%{y}: explains %{x:.1%} of the variance alone"
                " ± %{customdata:.1%}<extra></extra>",
            },
        ],
        "layout": style.layout(
            xaxis=style.axis(
                f"share of {metric}'s variance explained alone (ω²)",
                tickformat=".0%",
                range=[
                    0,
                    max(
                        0.05, min(1.0, max(s + result.errors.get(n, 0.0) for n, s in ranked) * 1.25)
                    ),
                ],
            ),
            yaxis={"automargin": True, "categoryorder": "array", "categoryarray": names},
            margin={"l": 100, "r": 24, "t": 8, "b": 44},
            showlegend=False,
        ),
    }
