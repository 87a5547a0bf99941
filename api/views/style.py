"""The look shared by every figure: Okabe–Ito colours (safe for colour-blind readers) and a
quiet layout. Marker shapes differ as well as colours, so nothing is told by colour alone."""

from __future__ import annotations

import html
import math
from typing import Any

FEASIBLE = "#0072B2"  # blue
INFEASIBLE = "#D55E00"  # vermillion
BEST = "#009E73"  # bluish green
PRUNED = "#E69F00"  # orange
FAILED = "#999999"
MUTED = "#b8c0c8"
# For lines of several trials: best first, then the rest of the palette.
SERIES = ["#009E73", "#0072B2", "#D55E00", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif'

Figure = dict[str, Any]


def plot_text(value: object) -> str:
    """A value as Plotly text, shown literally: Plotly reads a subset of HTML in its text
    (``<b>``, ``<br>``, ``<a href>``) and decodes entities, so a user's string (a categorical
    choice) is escaped, as a page's template escapes it. Names need not be: specs and reports
    allow only identifiers."""
    return html.escape(str(value), quote=False)


def nice_step(rough: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten at least ``rough``: the step between
    round ticks (an axis's, a colour bar's levels)."""
    base = 10.0 ** math.floor(math.log10(rough))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= rough * (1 - 1e-9))


NUMBER = ",.4~r"
"""Plotly's (d3's) format for a value in hover text: 4 significant digits, thousands
separated, never an exponent: what the pages' ``fmt`` writes."""


def axis(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "standoff": 6},
        "gridcolor": "#eef1f4",
        "linecolor": "#c5ccd3",
        "zeroline": False,
        "automargin": True,
        # "131,200", not "131.2k" or "1.312e+05", as the tables write it.
        "separatethousands": True,
        "exponentformat": "none",
        **extra,
    }


def layout(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "margin": {"l": 56, "r": 16, "t": 28, "b": 44},
        "font": {"family": FONT, "size": 12, "color": "#1d232a"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "closest",
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {
            "orientation": "h",
            "y": 1.02,
            "yanchor": "bottom",
            "x": 0,
            "font": {"size": 12},
        },
    }
    base.update(extra)
    return base
