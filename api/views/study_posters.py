"""The study page's posters: each plot drawn by the server as static SVG at the size the page
measured, shown at once while the browser loads Plotly, which then draws over them.

A poster stands in for the figure Plotly will draw from the same data, so it is drawn from
the same figure (``api/views/poster.py``); a plot with nothing to show has no poster (the page
says why, as it does without posters)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from api.views.poster import poster
from api.views.style import Figure
from hpsearch.errors import InvalidInput

SLOTS = ("history", "param", "curves", "importance", "parallel", "contour", "edf", "timeline")
"""The plots a poster can be asked for; ``param`` is the size of every parameter's plot."""

SMALLEST, LARGEST = 80, 4000
"""Pixels: a plot outside these is not one the page lays out."""


def parse_sizes(raw: str) -> dict[str, tuple[int, int]]:
    """``"history:1330x400,param:430x250"`` → ``{"history": (1330, 400), …}``; a slot not
    named gets no poster. Raises ``InvalidInput`` (field ``sizes``) naming what is wrong."""
    sizes: dict[str, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, size = item.partition(":")
        if name not in SLOTS:
            raise InvalidInput("sizes", f"no plot {name!r}; plots: {', '.join(SLOTS)}")
        width, _, height = size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise InvalidInput("sizes", f"{item!r} is not name:WIDTHxHEIGHT")
        w, h = int(width), int(height)
        if not (SMALLEST <= w <= LARGEST and SMALLEST <= h <= LARGEST):
            raise InvalidInput(
                "sizes", f"{item!r}: a plot is {SMALLEST} to {LARGEST} pixels each way"
            )
        sizes[name] = (w, h)
    return sizes


def study_posters(
    plots: Mapping[str, Any],
    extra: Mapping[str, Figure | None],
    sizes: Mapping[str, tuple[int, int]],
) -> dict[str, Any]:
    """Posters of the study page's figures: ``plots`` is what ``study_plots`` returns,
    ``extra`` the figures the page asks for apart (curves, contour, timeline)."""
    figures: dict[str, Figure | None] = {
        "history": plots["history"] if plots["valued"] else None,
        "importance": plots["importance"],
        "parallel": plots["parallel_lines"],
        "edf": plots["edf"],
        **extra,
    }
    out: dict[str, Any] = {}
    for name, figure in figures.items():
        size = sizes.get(name)
        out[name] = _draw(name, figure, size) if size else None
    param_size = sizes.get("param")
    out["params"] = {
        figure["layout"]["meta"]["param"]: poster(figure, *param_size, key=f"p{i}")
        for i, figure in enumerate(plots["params"])
        if param_size
    }
    return out


def _draw(name: str, figure: Figure | None, size: tuple[int, int]) -> str | None:
    if figure is None or not figure["data"]:
        return None
    if name == "contour":
        figure = _cells_sized(figure, size)
    return poster(figure, *size, key=name)


def _cells_sized(figure: Figure, size: tuple[int, int]) -> Figure:
    """The contour's squares sized to their cells, as the page sizes them once Plotly has
    laid out the axes (a square per cell, neighbours touching)."""
    figure = copy.deepcopy(figure)
    margin = figure["layout"]["margin"]
    nx, ny = figure["layout"]["meta"]["bins"]
    # The colour bar takes about 60 px on the right.
    width = size[0] - margin["l"] - margin["r"] - 60
    height = size[1] - margin["t"] - margin["b"]
    figure["data"][0]["marker"]["size"] = max(2.0, width / (nx + 0.8), height / (ny + 0.8))
    return figure
