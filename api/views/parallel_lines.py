"""Parallel coordinates drawn as plain SVG lines: the study page's first paint of them.

Plotly's parcoords trace is WebGL only; setting up its context in a browser without a GPU
took 1.5–3 s in one uninterruptible task whatever the number of lines (docs/performance.md).
This draws the same axes, on the same scales, from the same parcoords figure as a few scatter
traces of lines (one per colour band of the objective, the best drawn last, on top); the page
offers the WebGL figure, whose axes can be brushed, at a click.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from api.views import style
from api.web_assets import fmt

# Viridis at nine evenly spaced stops: its first colour is the worst value's.
VIRIDIS = [
    "#440154",
    "#472d7b",
    "#3b528b",
    "#2c728e",
    "#21918c",
    "#28ae80",
    "#5ec962",
    "#addc30",
    "#fde725",
]


def parallel_lines(figure: dict[str, Any] | None, maximize: bool) -> dict[str, Any] | None:
    """The SVG form of a ``parallel_figure``; ``None`` where that is ``None``."""
    if figure is None:
        return None
    trace = figure["data"][0]
    dims = trace["dimensions"]
    scaled = [_scaled(dim) for dim in dims]
    colour_by = dims[-1]["values"]  # the objective, the last axis
    low, high = min(colour_by), max(colour_by)
    bands: list[list[int]] = [[] for _ in VIRIDIS]
    for row, value in enumerate(colour_by):
        share = 0.5 if high == low else (value - low) / (high - low)
        share = share if maximize else 1 - share
        bands[min(len(VIRIDIS) - 1, int(share * len(VIRIDIS)))].append(row)
    data: list[dict[str, Any]] = []
    for colour, rows in zip(VIRIDIS, bands, strict=True):
        if not rows:
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        for row in rows:
            xs += [*range(len(dims)), None]
            ys += [*(axis[0][row] for axis in scaled), None]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ys,
                "line": {"color": colour, "width": 1},
                "opacity": 0.55,
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    data.append(_tick_labels(scaled))
    data.append(_colour_bar(low, high, maximize, trace["line"]["colorbar"]["title"]["text"]))
    axes = [
        {
            "type": "line",
            "x0": i,
            "x1": i,
            "y0": 0,
            "y1": 1,
            "line": {"color": "#5b6570", "width": 1},
            "layer": "above",
        }
        for i in range(len(dims))
    ]
    layout = style.layout(
        margin={"l": 60, "r": 40, "t": 56, "b": 24},
        meta={"lines": len(colour_by), "svg": True},
        shapes=axes,
        xaxis={
            "tickvals": list(range(len(dims))),
            "ticktext": [style.plot_text(dim["label"]) for dim in dims],
            "side": "top",
            "showgrid": False,
            "zeroline": False,
            "range": [-0.4, len(dims) - 0.6],
            "fixedrange": True,
        },
        yaxis={"visible": False, "range": [-0.04, 1.04], "fixedrange": True},
        showlegend=False,
    )
    return {"data": data, "layout": layout}


def _scaled(dim: dict[str, Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """An axis's values mapped onto 0..1 of its range, and its ticks there, labelled."""
    values = [float(v) for v in dim["values"]]
    low, high = dim.get("range") or (min(values), max(values))
    if high == low:
        low, high = low - 0.5, high + 0.5
    span = high - low
    tickvals = dim.get("tickvals") or _even_ticks(low, high)
    ticktext = dim.get("ticktext") or [fmt(t) for t in tickvals]
    ticks = [((t - low) / span, text) for t, text in zip(tickvals, ticktext, strict=True)]
    return [(v - low) / span for v in values], ticks


def _even_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values from ``low`` to ``high`` (1, 2 or 5 times a power of ten
    apart), as an axis of a metric has."""
    step = style.nice_step((high - low) / (count - 1))
    first = math.ceil(low / step) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def _tick_labels(scaled: Sequence[tuple[list[float], list[tuple[float, str]]]]) -> dict[str, Any]:
    xs, ys, texts = [], [], []
    for i, (_, ticks) in enumerate(scaled):
        for y, text in ticks:
            xs.append(i)
            ys.append(y)
            texts.append(f"{style.plot_text(text)} –")  # a choice may hold markup
    return {
        "type": "scatter",
        "mode": "text",
        "x": xs,
        "y": ys,
        "text": texts,
        "textposition": "middle left",
        "textfont": {"size": 11, "color": "#1d232a"},
        "hoverinfo": "skip",
        "showlegend": False,
    }


def _colour_bar(low: float, high: float, maximize: bool, title: str) -> dict[str, Any]:
    """An invisible point whose colour bar reads the objective, as parcoords shows it."""
    return {
        "type": "scatter",
        "mode": "markers",
        "x": [None, None],
        "y": [None, None],
        "hoverinfo": "skip",
        "showlegend": False,
        "marker": {
            "color": [low, high],
            "cmin": low,
            "cmax": high,
            "colorscale": "Viridis",
            "reversescale": not maximize,
            "showscale": True,
            "colorbar": {"title": {"text": title}, "thickness": 12},
            "size": 0.1,
        },
    }
