"""Study figures as Plotly JSON: optimization history, one scatter per parameter on its own
scale, parallel coordinates, importance. Pure: trial rows in, ``{"data", "layout"}`` out."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from api.views import style
from api.views.sampling import best_so_far
from hpsearch.importance import Importance
from hpsearch.objective import Objective
from hpsearch.space import CategoricalParam, IntParam, Param, ParamValue
from hpsearch.store.results import TrialPoint

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
    line = best_so_far(line_from if line_from is not None else points, objective.direction)
    data = point_traces(points, objective, best_id, lambda p: p.number)
    if line:
        # Over the cloud, under the best trial's star.
        data.insert(
            len(data) - 1 if data and data[-1]["name"] == "best feasible" else len(data),
            {
                "type": "scatter",
                "mode": "lines",
                "name": "best feasible so far",
                "x": [n for n, _ in line],
                "y": [v for _, v in line],
                "line": {"shape": "hv", "color": style.BEST, "width": 2.5},
                "hoverinfo": "skip",
            },
        )
    return {
        "data": data,
        "layout": style.layout(
            xaxis=style.axis("trial number", rangemode="tozero"),
            yaxis=style.axis(objective.metric),
            margin={"l": 60, "r": 16, "t": 36, "b": 44},
        ),
    }


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
        return float, style.axis(
            f"{param.name} (log scale)", type="log", exponentformat="power", range=span
        )
    if param.scale == "reverse_log":
        # 1/(1-β) is the averaging window: what matters is how close β is to 1, so 1-β on a
        # log axis spreads 0.9, 0.99 and 0.999 evenly. High β (small 1-β) on the right.
        span = _padded(math.log10(1 - low), math.log10(1 - high))
        return (lambda v: 1.0 - float(v)), style.axis(
            f"1 − {param.name} (log scale)", type="log", exponentformat="power", range=span
        )
    return float, style.axis(param.name, range=_padded(low, high))


def _padded(a: float, b: float, fraction: float = 0.04) -> list[float]:
    pad = (b - a) * fraction if b != a else 0.5
    return [a - pad, b + pad]


def point_traces(
    points: Sequence[TrialPoint],
    objective: Objective,
    best_id: int | None,
    x_of: Callable[[TrialPoint], Any],
    label_of: Callable[[TrialPoint], str] | None = None,
) -> list[dict[str, Any]]:
    """Feasible, infeasible (one trace per set of broken constraints) and pruned trials,
    each with its own colour *and* marker, and a star on the best feasible trial.

    ``label_of`` names the x value in the hover text, where x itself is not the value.
    """
    groups: dict[str, list[TrialPoint]] = {}
    notes: dict[int, str] = {}
    for p in points:
        if p.value is None or not math.isfinite(p.value):
            continue
        if p.state == "pruned":
            key = "pruned"
            note = f"pruned at step {p.last_step}" if p.last_step is not None else "pruned"
        elif p.feasible:
            key = note = "feasible"
        else:
            broken = objective.evaluate(p.metrics).broken or ("a constraint",)
            key = note = "broke " + ", ".join(broken)
        notes[p.id] = f"{note} · {label_of(p)}" if label_of is not None else note
        groups.setdefault(key, []).append(p)
    hover = f"%{{text}}<br>{objective.metric} = %{{y:.4g}}"
    hover += "<extra></extra>" if label_of is not None else "<br>x = %{x}<extra></extra>"
    traces = [
        _marker_trace(key, groups[key], x_of, notes, hover, _marker(key))
        for key in sorted(groups, key=_group_order)
    ]
    best = [p for p in points if p.id == best_id and p.id in notes]
    if best:
        traces.append(_marker_trace("best feasible", best, x_of, notes, hover, _BEST_MARKER))
    return traces


_BEST_MARKER = {
    "symbol": "star",
    "size": 17,
    "color": style.BEST,
    "line": {"color": "#ffffff", "width": 1},
}


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


def _marker_trace(
    name: str,
    members: Sequence[TrialPoint],
    x_of: Callable[[TrialPoint], Any],
    notes: dict[int, str],
    hover: str,
    marker: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "markers",
        "name": f"{name} ({len(members)})" if name != "best feasible" else name,
        "x": [x_of(p) for p in members],
        "y": [p.value for p in members],
        "customdata": [p.id for p in members],
        "text": [f"trial {p.number} · {notes.get(p.id, p.state)}" for p in members],
        "hovertemplate": hover,
        "marker": marker,
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
    dims += [
        {"label": m, "values": [p.metrics[m] for p in rows]}
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
        return {"label": param.name, "values": [float(v) for v in raw]}
    # Log-like scales: the axis is the parameter's unit interval, labelled with real values,
    # so 1e-4..1e-3 takes as much room as 0.1..1.
    ticks = nice_ticks(param)
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
    ranked = list(reversed(result.ranked()))  # Plotly draws bars bottom-up
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [score for _, score in ranked],
                "y": [name for name, _ in ranked],
                "text": [f"{score:.0%}" for _, score in ranked],
                "textposition": "outside",
                "cliponaxis": False,
                "marker": {"color": style.FEASIBLE},
                "hovertemplate": "%{y}: explains %{x:.1%} of the variance alone<extra></extra>",
            }
        ],
        "layout": style.layout(
            xaxis=style.axis(
                f"share of {metric}'s variance explained alone (ω²)",
                tickformat=".0%",
                range=[0, max(0.05, min(1.0, max(s for _, s in ranked) * 1.25))],
            ),
            yaxis={"automargin": True},
            margin={"l": 100, "r": 24, "t": 8, "b": 44},
            showlegend=False,
        ),
    }
