"""The posters' marks: Plotly's marker symbols as SVG paths (relative, so one path holds
every marker of a trace), colour scales, strokes and dashes."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from api.views.poster_text import attr, num

# Plotly's Viridis, stop for stop.
VIRIDIS = [
    *("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e"),
    *("#21918c", "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219"),
    "#fde725",
]


def symbol_path(symbol: str, r: float) -> str:
    """Plotly's path for a marker symbol of radius ``r`` (half its size)."""
    base = symbol.removesuffix("-open")
    c = num
    if base == "square":
        return f"M{c(r)},{c(r)}H{c(-r)}V{c(-r)}H{c(r)}Z"
    if base == "diamond":
        d = r * 1.3
        return f"M{c(d)},0L0,{c(d)}L{c(-d)},0L0,{c(-d)}Z"
    if base == "star":
        s = r * 1.4
        x1, x2, x3, x4 = (c(s * k) for k in (0.225, 0.951, 0.363, 0.588))
        y1, y2, y3, y4, y5 = (c(s * k) for k in (-1, -0.309, 0.118, 0.809, 0.382))
        return (
            f"M{x1},{y2}H{x2}L{x3},{y3}L{x4},{y4}L0,{y5}L-{x4},{y4}L-{x3},{y3}"
            f"L-{x2},{y2}H-{x1}L0,{y1}Z"
        )
    if base == "x-thin":
        return _cross(c(r))
    if base == "x":
        d = r * 0.8 / math.sqrt(2)
        moves = {"ne": (d, d), "se": (d, -d), "sw": (-d, -d), "nw": (-d, d)}
        path = f"M0,{c(d)}"
        for step in ("ne", "se", "sw", "se", "sw", "nw", "sw", "nw", "ne", "nw", "ne"):
            dx, dy = moves[step]
            path += f"l{c(dx)},{c(dy)}"
        return path + "Z"
    circle = f"M{c(r)},0A{c(r)},{c(r)} 0 1,1 0,{c(-r)}A{c(r)},{c(r)} 0 0,1 {c(r)},0Z"
    if base == "circle-x":
        return circle + _cross(c(r / math.sqrt(2)))
    return circle


_PATH_TOKEN = re.compile(r"[A-Za-z]|-?(?:\d+\.?\d*|\.\d+)(?:e-?\d+)?")
_ARGUMENTS = {"M": 2, "L": 2, "H": 1, "V": 1, "A": 7, "Z": 0}


def relative(path: str) -> str:
    """A symbol's outline (absolute coordinates around 0,0, as ``symbol_path`` writes it)
    in relative commands after a move from the centre, so it follows any "M x,y"."""
    tokens = _PATH_TOKEN.findall(path)
    out: list[str] = []
    x = y = start_x = start_y = 0.0
    i = 0
    while i < len(tokens):
        command = tokens[i]
        i += 1
        absolute = command.upper()
        count = _ARGUMENTS[absolute]
        while True:
            args = [float(t) for t in tokens[i : i + count]]
            i += count
            if command.islower():  # already relative
                dx, dy = (args[-2], args[-1]) if absolute in "MLA" else (0.0, 0.0)
                if absolute == "H":
                    dx = args[0]
                if absolute == "V":
                    dy = args[0]
            else:
                tx = args[-2] if absolute in "MLA" else args[0] if absolute == "H" else x
                ty = args[-1] if absolute in "MLA" else args[0] if absolute == "V" else y
                dx, dy = tx - x, ty - y
            if absolute == "Z":
                out.append("z")
                x, y = start_x, start_y
            elif absolute == "H":
                out.append(f"h{num(dx)}")
            elif absolute == "V":
                out.append(f"v{num(dy)}")
            elif absolute == "A":
                rx, ry, rotation, large, sweep = args[:5]
                arc = f"{num(rx)},{num(ry)} {num(rotation)} {int(large)},{int(sweep)}"
                out.append(f"a{arc} {num(dx)},{num(dy)}")
            else:
                out.append(f"{absolute.lower()}{num(dx)},{num(dy)}")
            if absolute != "Z":
                x, y = x + dx, y + dy
            if absolute == "M":
                start_x, start_y = x, y
            # Further pairs after a move are lines (SVG's rule); a command may repeat.
            if i >= len(tokens) or tokens[i].isalpha() or count == 0:
                break
            if absolute == "M":
                command = "l" if command.islower() else "L"
                absolute = "L"
    return "".join(out)


def _cross(d: str) -> str:
    return f"M{d},{d}L-{d},-{d}M{d},-{d}L-{d},{d}"


def is_open(symbol: str) -> bool:
    return symbol.endswith("-open") or symbol.startswith("x-thin")


def colour_at(scale: Sequence[str], share: float) -> str:
    """The colour a share (0..1) of a colour scale takes, interpolated in RGB as d3 does."""
    share = min(1.0, max(0.0, share)) * (len(scale) - 1)
    i = min(int(share), len(scale) - 2)
    f = share - i
    (r0, g0, b0), (r1, g1, b1) = _rgb(scale[i]), _rgb(scale[i + 1])
    return f"#{round(r0 + (r1 - r0) * f):02x}{round(g0 + (g1 - g0) * f):02x}" + (
        f"{round(b0 + (b1 - b0) * f):02x}"
    )


@functools.cache
def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def scale_of(marker: dict[str, Any]) -> list[str]:
    name = str(marker.get("colorscale") or "Viridis")
    stops = list(VIRIDIS)
    if name.endswith("_r"):
        stops.reverse()
    if marker.get("reversescale"):
        stops.reverse()
    return stops


def colour_range(marker: dict[str, Any]) -> tuple[float, float]:
    values = [float(v) for v in marker.get("color") or [] if isinstance(v, int | float)]
    values = [v for v in values if math.isfinite(v)]
    low = marker.get("cmin", min(values, default=0.0))
    high = marker.get("cmax", max(values, default=1.0))
    return float(low), float(high)


def stroke_attrs(colour: str, width: float, dash: object = None) -> str:
    """A line's SVG attributes: colour, width, and Plotly's dash pattern."""
    out = f' stroke="{attr(colour)}" stroke-width="{num(width)}"'
    return out + (_dash(str(dash), width) if dash else "")


def _dash(dash: str, width: float) -> str:
    w = max(width, 3.0)
    if dash == "dot":
        return f' stroke-dasharray="{num(w)},{num(w)}"'
    if dash == "dash":
        return f' stroke-dasharray="{num(3 * w)},{num(3 * w)}"'
    return ""
