"""A static SVG "poster" of a Plotly figure: what the study page shows at once, before Plotly
has parsed its bundle and drawn the interactive plot over it.

It draws the subset of Plotly the study page's figures use (``figures.py``, ``curves.py``,
``parallel_lines.py``) as Plotly would lay it out: the same plot area, axis ranges, ticks,
markers, lines, legend and colour bar, so the swap to the interactive plot does not jump. No
hover, no zoom. Where Plotly measures drawn text (automatic margins, the legend's spacing), a
text's width is estimated from its characters (``_width``), so those can be off by a few
pixels in another font.
"""

from __future__ import annotations

import functools
import html
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.views import style

Figure = style.Figure

CHAR = 0.6  # a character's width, in font sizes, where _CHAR_WIDTHS has none
LEGEND_ROW = 19.0  # Plotly's legend item height at a 12 px font

# Plotly's Viridis, stop for stop.
VIRIDIS = [
    *("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e"),
    *("#21918c", "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219"),
    "#fde725",
]

_ids = itertools.count(1)


def poster(figure: Figure, width: int, height: int, key: str = "") -> str:
    """Static SVG of a Plotly figure (the subset the study page's figures use).

    ``key`` prefixes the SVG's ids (its clip path, its marker shapes) so several posters on
    one page never share one; without it a process-wide counter makes them unique.
    """
    prefix = _ident(key) if key else f"p{next(_ids)}"
    return _Poster(figure, width, height, prefix).svg()


def _ident(key: str) -> str:
    return "p" + "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def text_of(value: object) -> str:
    """Plotly text (escaped for Plotly by ``style.plot_text``) as SVG text: decoded once,
    then escaped for XML, so a ``<b>`` in a user's choice reads literally."""
    return _xml(html.unescape(str(value)))


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _xml(text).replace('"', "&quot;")


def _n(v: float) -> str:
    """A coordinate, to a tenth of a pixel (what the eye can tell)."""
    s = f"{v:.1f}"
    if s.endswith(".0"):
        s = s[:-2]
    return "0" if s == "-0" else s


def _width(text: str, size: float) -> float:
    """About how wide a text is drawn (what Plotly's automargin and legend measure)."""
    return sum(_CHAR_WIDTHS.get(c, CHAR) for c in html.unescape(text)) * size


# Character widths in font sizes, by class: a sans-serif's narrow and wide letters.
_CHAR_WIDTHS = {
    **dict.fromkeys("ijlI.,:;'|! ·", 0.3),
    **dict.fromkeys("frt()[]-/", 0.38),
    **dict.fromkeys("mwMW%=+≤≥−×", 0.88),
    **dict.fromkeys("ABCDEFGHKLNOPQRSTUVXYZ", 0.68),
    **dict.fromkeys("0123456789", 0.64),
}


# -- axes --------------------------------------------------------------------------------------


@dataclass
class _Axis:
    """One cartesian axis: how a data value maps to Plotly's linear coordinate (log10 on a
    log axis, milliseconds on a date axis, the index on a category axis) and on to pixels."""

    spec: dict[str, Any]
    kind: str
    categories: dict[str, int] = field(default_factory=dict)  # name → position
    lo: float = 0.0
    hi: float = 1.0
    p0: float = 0.0  # pixel of lo
    p1: float = 1.0  # pixel of hi
    ticks: list[tuple[float, str]] = field(default_factory=list)

    def to_l(self, value: Any) -> float | None:
        if value is None or isinstance(value, bool):
            return None
        if self.kind == "category":
            at = self.categories.get(str(value))
            return None if at is None else float(at)
        if self.kind == "date":
            return _ms(value)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        if self.kind == "log":
            return math.log10(v) if v > 0 else None
        return v

    def scale(self) -> tuple[float, float]:
        """``(a, b)``: the pixel of a linear coordinate ``l`` is ``a * l + b``."""
        a = (self.p1 - self.p0) / ((self.hi - self.lo) or 1.0)
        return a, self.p0 - a * self.lo

    def px(self, v: float) -> float:
        a, b = self.scale()
        return a * v + b

    @property
    def visible(self) -> bool:
        return self.spec.get("visible", True) is not False


def _ms(value: Any) -> float | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        return float(value)
    else:
        return None
    # Plotly draws a date's wall-clock time whatever its zone.
    return moment.replace(tzinfo=UTC).timestamp() * 1000.0


def _kind(spec: dict[str, Any], values: Sequence[Any]) -> str:
    given = spec.get("type")
    if given in ("linear", "log", "category", "date"):
        return str(given)
    first = next((v for v in values if v is not None), None)
    if isinstance(first, str):
        try:
            float(first)
        except ValueError:
            return "category"
    return "linear"


def _categories(spec: dict[str, Any], values: Sequence[Any]) -> dict[str, int]:
    """A category axis's positions: ``categoryarray``'s order, then the rest as first seen
    (from the bottom up on y, as Plotly places them)."""
    order: dict[str, int] = {}
    for v in [*(spec.get("categoryarray") or []), *values]:
        if v is not None:
            order.setdefault(str(v), len(order))
    return order


def _autorange(
    axis: _Axis, extremes: Sequence[tuple[float, float, float]], length: float, letter: str
) -> tuple[float, float]:
    """Plotly's autorange: the smallest range keeping every trace's extremes, each padded by
    its pixels (``(low, high, pad)`` per trace), inside ``length`` pixels."""
    tozero = axis.spec.get("rangemode") == "tozero" and axis.kind == "linear"
    if not extremes:  # Plotly's empty axes
        if axis.kind != "linear":
            return 0.0, 1.0
        return 0.0 if tozero else -1.0, 6.0 if letter == "x" else 4.0
    lows = [(lo, pad) for lo, _, pad in extremes]
    highs = [(hi, pad) for _, hi, pad in extremes]
    low = min(v for v, _ in lows)
    high = max(v for v, _ in highs)
    if low == high:
        return (0.0, max(1.0, 2 * high)) if tozero and low >= 0 else (low - 1.0, high + 1.0)
    best = ((low, 0.0), (high, 0.0), -1.0)
    for (a, pa), (b, pb) in itertools.product(lows, highs):
        room = length - pa - pb
        if b > a and room > 0 and (b - a) / room > best[2]:
            best = ((a, pa), (b, pb), (b - a) / room)
    (a, pa), (b, pb), _ = best
    if tozero:
        # Zero, unpadded, replaces the end on its side; the other end keeps its padding.
        if a >= 0:
            a, pa = 0.0, 0.0
        elif b <= 0:
            b, pb = 0.0, 0.0
    slope = (b - a) / max(length - pa - pb, 1.0)
    return a - pa * slope, b + pb * slope


def _nice(rough: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten at least ``rough``."""
    base = 10.0 ** math.floor(math.log10(rough))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= rough * (1 - 1e-9))


def _linear_ticks(lo: float, hi: float, count: float, dtick: Any = None) -> list[float]:
    low, high = min(lo, hi), max(lo, hi)
    step = float(dtick) if isinstance(dtick, int | float) and dtick > 0 else 0.0
    if not step:
        step = _nice((high - low) / max(count, 1.0))
    first = math.ceil(low / step - 1e-9)
    return [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)][:200]


def _number(value: float, step: float, spec: dict[str, Any]) -> str:
    """A tick label as Plotly writes one: the step's precision, no trailing zeros, thousands
    separated, a true minus sign."""
    fmt = str(spec.get("tickformat") or "")
    if fmt.endswith("%"):
        digits = int(fmt.strip(".%") or 0) if fmt.strip(".%").isdigit() else 0
        return f"{value * 100:.{digits}f}%".replace("-", "−")
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 6
    sep = "," if spec.get("separatethousands") else ""
    text = f"{abs(value):{sep}.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return ("−" + text) if value < 0 and text != "0" else text


_SUPER = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power(k: int, spec: dict[str, Any]) -> str:
    if spec.get("exponentformat") == "power":
        return "1" if k == 0 else "10" if k == 1 else "10" + str(k).translate(_SUPER)
    text = (
        f"{10.0**k:,.{max(0, -k)}f}"
        if spec.get("separatethousands")
        else f"{10.0**k:.{max(0, -k)}f}"
    )
    return text


_PLAIN = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "−0123456789")


def _tick_text(text: str, powers: bool) -> str:
    """A tick label as SVG; on a log axis (``powers``) an exponent (``10⁻³``) raised and
    smaller, as Plotly draws it."""
    base = text.rstrip("⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    if base == text or not powers:
        return text_of(text)
    power = text[len(base) :].translate(_PLAIN)
    return f'{text_of(base)}<tspan dy="-.6em" font-size="70%">{power}</tspan>'


def _tick_size(axis: _Axis, at: float, text: str) -> float:
    """A tick label's font, in the axis's font size: on a log axis ticked by ``dtick``, Plotly
    writes the powers of ten a size up and the digits between them a size down."""
    if axis.kind != "log" or axis.spec.get("tickvals") is not None:
        return 1.0
    if abs(at - round(at)) > 1e-9:
        return 0.75
    return 1.25 if axis.spec.get("exponentformat") == "power" else 1.0


def _log_ticks(axis: _Axis, count: float) -> list[tuple[float, str]]:
    low, high = min(axis.lo, axis.hi), max(axis.lo, axis.hi)
    dtick = axis.spec.get("dtick")
    if dtick is None:
        span = high - low
        dtick = (
            max(1, math.ceil(span / count)) if span > count * 0.7 else ("D2" if span > 1 else "D1")
        )
    out = []
    if isinstance(dtick, str) and dtick.startswith("D"):
        digits = (1, 2, 5) if dtick == "D2" else tuple(range(1, 10))
        for k in range(math.floor(low), math.ceil(high) + 1):
            for d in digits:
                v = k + math.log10(d)
                if low - 1e-9 <= v <= high + 1e-9:
                    out.append((v, _power(k, axis.spec) if d == 1 else str(d)))
        return out
    step = max(1, round(float(dtick)))
    for k in range(math.ceil(low - 1e-9), math.floor(high + 1e-9) + 1):
        if k % step == 0:
            out.append((float(k), _power(k, axis.spec)))
    return out


_DATE_STEPS = [
    s * 1000.0
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
] + [86400_000.0 * d for d in (1, 2, 7, 14)]


def _date_ticks(lo: float, hi: float, count: float) -> list[tuple[float, str]]:
    low, high = min(lo, hi), max(lo, hi)
    rough = (high - low) / max(count, 1.0)
    step = next((s for s in _DATE_STEPS if s >= rough), _DATE_STEPS[-1])
    out: list[tuple[float, str]] = []
    for k in range(math.ceil(low / step), math.floor(high / step) + 1):
        moment = datetime.fromtimestamp(k * step / 1000.0, UTC)
        if step >= 86400_000:
            label = f"{moment:%b} {moment.day}"
        elif step < 60_000:
            label = f"{moment:%H:%M:%S}"
        else:
            label = f"{moment:%H:%M}"
        if not out and step < 86400_000:
            label += f"\n{moment:%b} {moment.day}, {moment.year}"
        out.append((k * step, label))
    return out


def _ticks(axis: _Axis, length: float, letter: str) -> list[tuple[float, str]]:
    spec = axis.spec
    low, high = min(axis.lo, axis.hi), max(axis.lo, axis.hi)

    def inside(v: float | None) -> bool:
        return v is not None and low - 1e-9 * (high - low) <= v <= high + 1e-9 * (high - low)

    if spec.get("tickvals") is not None and axis.kind != "category":
        vals = list(spec["tickvals"])
        texts = list(spec.get("ticktext") or [])
        out = []
        for i, v in enumerate(vals):
            at = axis.to_l(v)
            if at is not None and inside(at):
                label = texts[i] if i < len(texts) else _number(float(v), 0.0, spec)
                out.append((at, str(label)))
        return out
    if axis.kind == "category":
        return [(float(i), c) for i, c in enumerate(axis.categories) if inside(float(i))]
    # Plotly: a tick every 80 px on x, 40 on y, 4 to 9 of them, plus one.
    count = max(4.0, min(9.0, length / (80.0 if letter == "x" else 40.0))) + 1
    if axis.kind == "log":
        return _log_ticks(axis, count)
    if axis.kind == "date":
        return _date_ticks(axis.lo, axis.hi, count)
    values = _linear_ticks(axis.lo, axis.hi, count, spec.get("dtick"))
    step = values[1] - values[0] if len(values) > 1 else abs(axis.hi - axis.lo)
    return [(v, _number(v, step, spec)) for v in values]


# -- markers -----------------------------------------------------------------------------------


def _symbol_path(symbol: str, r: float) -> str:
    """Plotly's path for a marker symbol of radius ``r`` (half its size)."""
    base = symbol.removesuffix("-open")
    c = _n
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


def _relative(path: str) -> str:
    """A symbol's outline (absolute coordinates around 0,0, as ``_symbol_path`` writes it)
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
                out.append(f"h{_n(dx)}")
            elif absolute == "V":
                out.append(f"v{_n(dy)}")
            elif absolute == "A":
                rx, ry, rotation, large, sweep = args[:5]
                out.append(
                    f"a{_n(rx)},{_n(ry)} {_n(rotation)} {int(large)},{int(sweep)} {_n(dx)},{_n(dy)}"
                )
            else:
                out.append(f"{absolute.lower()}{_n(dx)},{_n(dy)}")
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


def _is_open(symbol: str) -> bool:
    return symbol.endswith("-open") or symbol.startswith("x-thin")


def _colour_at(scale: Sequence[str], share: float) -> str:
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


def _scale_of(marker: dict[str, Any]) -> list[str]:
    name = str(marker.get("colorscale") or "Viridis")
    stops = list(VIRIDIS)
    if name.endswith("_r"):
        stops.reverse()
    if marker.get("reversescale"):
        stops.reverse()
    return stops


def _colour_range(marker: dict[str, Any]) -> tuple[float, float]:
    values = [float(v) for v in marker.get("color") or [] if isinstance(v, int | float)]
    values = [v for v in values if math.isfinite(v)]
    low = marker.get("cmin", min(values, default=0.0))
    high = marker.get("cmax", max(values, default=1.0))
    return float(low), float(high)


def _stroke(colour: str, width: float, dash: object = None) -> str:
    """A line's SVG attributes: colour, width, and Plotly's dash pattern."""
    out = f' stroke="{_attr(colour)}" stroke-width="{_n(width)}"'
    return out + (_dash(str(dash), width) if dash else "")


def _dash(dash: str, width: float) -> str:
    w = max(width, 3.0)
    if dash == "dot":
        return f' stroke-dasharray="{_n(w)},{_n(w)}"'
    if dash == "dash":
        return f' stroke-dasharray="{_n(3 * w)},{_n(3 * w)}"'
    return ""


# -- the poster --------------------------------------------------------------------------------


class _Poster:
    def __init__(self, figure: Figure, width: int, height: int, prefix: str) -> None:
        self.w, self.h, self.id = float(width), float(height), prefix
        self.layout: dict[str, Any] = figure.get("layout") or {}
        font = self.layout.get("font") or {}
        self.font_size = float(font.get("size", 12))
        self.font_family = str(font.get("family", style.FONT))
        self.colour = str(font.get("color", "#444"))
        self.all_traces: list[dict[str, Any]] = list(figure.get("data") or [])
        self.traces = [t for t in self.all_traces if t.get("visible", True) is True]
        self.out: list[str] = []

    def svg(self) -> str:
        head = (
            f'<svg class="poster" xmlns="http://www.w3.org/2000/svg" width="{int(self.w)}"'
            f' height="{int(self.h)}" viewBox="0 0 {int(self.w)} {int(self.h)}" role="img"'
            f' aria-label="{_attr(self._label())}" font-family="{_attr(self.font_family)}"'
            f' font-size="{_n(self.font_size)}" fill="{_attr(self.colour)}">'
        )
        bg = self.layout.get("paper_bgcolor", "#fff")
        self.out.append(f'<rect width="100%" height="100%" fill="{_attr(bg)}"/>')
        if any(t.get("type") == "parcoords" for t in self.all_traces):
            # WebGL parallel coordinates: the page never asks a poster of them; a frame
            # keeps the place.
            self.out.append('<rect class="frame" x="0.5" y="0.5" width="99%" height="99%"')
            self.out.append(' fill="none" stroke="#c5ccd3"/>')
            return head + "".join(self.out) + "</svg>"
        self._draw()
        return head + "".join(self.out) + "</svg>"

    def _label(self) -> str:
        titles = [
            html.unescape(str(((self.layout.get(a) or {}).get("title") or {}).get("text") or ""))
            for a in ("yaxis", "xaxis")
        ]
        if all(titles):
            return f"{titles[0]} by {titles[1]}"
        return next((t for t in titles if t), "plot")

    # -- layout ---------------------------------------------------------------------------

    def _draw(self) -> None:
        rows = self._place()
        self._grid()
        self._shapes("below")
        self._traces()
        self._shapes("above")
        self._axis_labels()
        self._draw_legend(rows)
        self._draw_menus()
        if self.bar is not None:
            self._draw_bar(self.bar)

    def _place(self) -> list[list[tuple[float, int, dict[str, Any]]]]:
        """Lay the figure out as Plotly would: the axes' kinds, the margins (pushed by the
        legend, buttons, tick labels, titles and colour bar), the ranges and the ticks; the
        legend's rows."""
        margin = {"l": 80.0, "r": 80.0, "t": 100.0, "b": 80.0}
        margin.update({k: float(v) for k, v in (self.layout.get("margin") or {}).items()})
        xs = [v for t in self.traces for v in t.get("x") or []]
        ys = [v for t in self.traces for v in t.get("y") or []]
        xspec = self.layout.get("xaxis") or {}
        yspec = self.layout.get("yaxis") or {}
        self.x = _Axis(xspec, _kind(xspec, xs))
        self.y = _Axis(yspec, _kind(yspec, ys))
        for axis, values in ((self.x, xs), (self.y, ys)):
            if axis.kind == "category":
                axis.categories = _categories(axis.spec, values)
        self.legend = self._legend_items()
        self.bar = next(
            (
                t["marker"]
                for t in self.traces
                if isinstance(t.get("marker"), dict) and t["marker"].get("showscale")
            ),
            None,
        )
        self.menus = self._menu_buttons()
        fs = self.font_size
        # The top margin grows to hold the legend rows above the plot.
        left, right = margin["l"], margin["r"]
        rows = self._legend_rows(self.w - left - right)
        above = max(self._legend_height(rows) if rows else 0.0, self._menu_height())
        if above:
            # The legend and the buttons sit 2 % of the plot's height above it (y = 1.02).
            need = above + 12 + 0.02 * (self.h - margin["b"])
            margin["t"] = max(margin["t"], round(need / 1.02))
        if self.x.visible and xspec.get("side") == "top":
            margin["t"] = max(margin["t"], fs * 1.3 + 6)
        if self.x.visible and xspec.get("automargin") and xspec.get("side") != "top":
            # The tick labels (two lines under a date axis's first tick, a raised exponent)
            # and the title under them.
            lines = 2 if self.x.kind == "date" else 1
            title = (xspec.get("title") or {}).get("text")
            standoff = float((xspec.get("title") or {}).get("standoff", 6))
            need = 6 + lines * 1.3 * fs + (round(fs * 1.2) * 1.3 + standoff if title else 0)
            if self.x.kind == "log" and xspec.get("exponentformat") == "power":
                need += 0.25 * 1.3 * fs  # its powers of ten are a size up
            margin["b"] = max(margin["b"], round(need))
        top, bottom = margin["t"], self.h - margin["b"]
        self.y.p0, self.y.p1 = bottom, top
        self._range(self.y, bottom - top)
        self.y.ticks = _ticks(self.y, bottom - top, "y") if self.y.visible else []
        if self.y.visible and yspec.get("automargin"):
            label_w = max((_width(t, fs) for _, t in self.y.ticks), default=0.0)
            title = (yspec.get("title") or {}).get("text")
            standoff = float((yspec.get("title") or {}).get("standoff", 6))
            need = label_w + 8 + (round(fs * 1.2) * 1.3 + standoff if title else 0)
            left = max(left, round(need))
        bar_w = self._bar_width() if self.bar is not None else 0.0
        plot_w = self.w - left - right
        if bar_w:
            # Plotly puts the bar at x = 1.02 of the plot and pushes the right margin for it.
            plot_w = min(plot_w, (self.w - left - bar_w) / 1.02)
        self.x.p0, self.x.p1 = left, left + plot_w
        self._range(self.x, plot_w)
        self.x.ticks = _ticks(self.x, plot_w, "x") if self.x.visible else []
        if self.x.ticks and xspec.get("automargin") and not bar_w:
            # A label near the right end sticking out of the plot pushes the margin by as
            # much (as Plotly does; not one at the very end of the range).
            at, text = max(self.x.ticks, key=lambda tick: self.x.px(tick[0]))
            over = self.x.px(at) + _width(text, fs) / 2 - (self.w - right)
            if over > 0 and abs(self.x.px(at) - (self.w - right)) > 0.5:
                plot_w -= round(over)
                self.x.p1 = left + plot_w
                self._range(self.x, plot_w)
                self.x.ticks = _ticks(self.x, plot_w, "x")
        self.box = (left, top, left + plot_w, bottom)
        return rows

    def _range(self, axis: _Axis, length: float) -> None:
        given = axis.spec.get("range")
        if given is not None and len(given) == 2:
            lo, hi = given
            if axis.kind == "date":
                lo, hi = _ms(lo), _ms(hi)
            if lo is not None and hi is not None:
                axis.lo, axis.hi = float(lo), float(hi)
                return
        letter = "x" if axis is self.x else "y"
        extremes = []
        for t in self.traces:
            values = [axis.to_l(v) for v in t.get(letter) or []]
            finite = [v for v in values if v is not None]
            if not finite:
                continue
            mode = str(t.get("mode", "lines+markers"))
            # Plotly pads an axis by 5 % of its length, and by the markers' size over 1.6 (at
            # least 3 px); a trace of lines alone is not padded along x.
            padded = letter == "y" or "markers" in mode or "text" in mode
            pad = 0.05 * length if padded else 0.0
            if "markers" in mode:
                size = (t.get("marker") or {}).get("size", 6)
                size = max(size) if isinstance(size, list) else float(size)
                pad += max(size / 1.6, 3.0)
            extremes.append((min(finite), max(finite), pad))
        axis.lo, axis.hi = _autorange(axis, extremes, length, letter)
        if axis.kind == "category" and not extremes:
            axis.lo, axis.hi = -0.5, max(0.5, len(axis.categories) - 0.5)

    # -- drawing ------------------------------------------------------------------------------

    def _grid(self) -> None:
        left, top, right, bottom = self.box
        parts = []
        plot_bg = self.layout.get("plot_bgcolor", "#fff")
        if plot_bg != self.layout.get("paper_bgcolor", "#fff"):
            parts.append(
                f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(right - left)}"'
                f' height="{_n(bottom - top)}" fill="{_attr(str(plot_bg))}"/>'
            )
        for axis, vertical in ((self.x, True), (self.y, False)):
            if not axis.visible or axis.spec.get("showgrid", True) is False:
                continue
            colour = axis.spec.get("gridcolor", "#eee")
            path = ""
            for v, _ in axis.ticks:
                p = _n(axis.px(v))
                path += (
                    f"M{p},{_n(top)}V{_n(bottom)}" if vertical else f"M{_n(left)},{p}H{_n(right)}"
                )
            if path:
                parts.append(
                    f'<path class="grid" d="{path}" stroke="{_attr(colour)}" fill="none"/>'
                )
        self.out.append("".join(parts))

    def _axis_labels(self) -> None:
        left, top, right, bottom = self.box
        fs = self.font_size
        out = self.out
        for axis, letter in ((self.x, "x"), (self.y, "y")):
            spec = axis.spec
            if not axis.visible:
                continue
            # Plotly shows the axis line by default once a line colour is given.
            if spec.get("showline", bool(spec.get("linecolor"))):
                colour = _attr(spec.get("linecolor", "#444"))
                d = (
                    f"M{_n(left)},{_n(bottom)}H{_n(right)}"
                    if letter == "x"
                    else f"M{_n(left)},{_n(top)}V{_n(bottom)}"
                )
                out.append(f'<path d="{d}" stroke="{colour}" fill="none"/>')
            on_top = spec.get("side") == "top"
            powers = axis.kind == "log" and spec.get("tickvals") is None
            labels = []
            for v, text in axis.ticks:
                p = _n(axis.px(v))
                lines = text.split("\n")
                size = _tick_size(axis, v, text) * fs
                font = f' font-size="{_n(size)}"' if size != fs else ""
                if letter == "x":
                    y = top - 3.4 if on_top else bottom + 2.2 + size * 1.1
                    body = _tick_text(lines[0], powers) + "".join(
                        f'<tspan x="{p}" dy="{_n(fs * 1.3)}">{text_of(line)}</tspan>'
                        for line in lines[1:]
                    )
                    labels.append(f'<text x="{p}" y="{_n(y)}"{font}>{body}</text>')
                else:
                    labels.append(
                        f'<text x="{_n(left - 3)}" y="{p}" dy=".35em"{font}>'
                        f"{_tick_text(text, powers)}</text>"
                    )
            anchor = "middle" if letter == "x" else "end"
            out.append(f'<g class="{letter}tick" text-anchor="{anchor}">{"".join(labels)}</g>')
            title = (spec.get("title") or {}).get("text")
            if not title:
                continue
            standoff = float((spec.get("title") or {}).get("standoff", 6))
            ts = round(fs * 1.2)  # Plotly's titles are a size up from the ticks
            if letter == "x":
                rows = max((t.count("\n") + 1 for _, t in axis.ticks), default=1)
                tick = max((_tick_size(axis, v, t) for v, t in axis.ticks), default=1.0) * fs
                y = bottom + 1 + tick * 1.3 * rows + standoff + ts * 0.8
                out.append(
                    f'<text class="xtitle" x="{_n((left + right) / 2)}" y="{_n(y)}"'
                    f' text-anchor="middle" font-size="{ts}">{text_of(title)}</text>'
                )
            else:
                label_w = max((_width(t, fs) for _, t in axis.ticks), default=0.0)
                x = left - 3 - label_w - standoff - ts * 0.25
                mid = _n((top + bottom) / 2)
                out.append(
                    f'<text class="ytitle" x="{_n(x)}" y="{mid}" text-anchor="middle"'
                    f' font-size="{ts}" transform="rotate(-90 {_n(x)} {mid})">'
                    f"{text_of(title)}</text>"
                )

    def _shapes(self, layer: str) -> None:
        left, top, right, bottom = self.box
        for shape in self.layout.get("shapes") or []:
            if shape.get("layer", "above") != layer:
                continue
            xy = []
            for axis, ref, k0, k1, a, b in (
                (self.x, shape.get("xref", "x"), "x0", "x1", left, right),
                (self.y, shape.get("yref", "y"), "y0", "y1", bottom, top),
            ):
                for k in (k0, k1):
                    v = shape.get(k, 0)
                    if ref == "paper":
                        xy.append(a + (b - a) * float(v))
                    else:
                        at = axis.to_l(v)
                        xy.append(axis.px(at) if at is not None else a)
            x0, x1, y0, y1 = xy
            line = shape.get("line") or {}
            width = float(line.get("width", 2))
            colour = str(line.get("color", "#444"))
            stroke = _stroke(colour, width, line.get("dash")) if width > 0 else ""
            opacity = shape.get("opacity")
            extra = f' opacity="{_attr(str(opacity))}"' if opacity is not None else ""
            if shape.get("type") == "rect":
                fill = _attr(shape.get("fillcolor", "none"))
                self.out.append(
                    f'<rect x="{_n(min(x0, x1))}" y="{_n(min(y0, y1))}" width="{_n(abs(x1 - x0))}"'
                    f' height="{_n(abs(y1 - y0))}" fill="{fill}"{stroke}{extra}/>'
                )
            elif shape.get("type", "line") == "line":
                self.out.append(
                    f'<path d="M{_n(x0)},{_n(y0)}L{_n(x1)},{_n(y1)}" fill="none"{stroke}{extra}/>'
                )

    def _traces(self) -> None:
        left, top, right, bottom = self.box
        clip = f"{self.id}-plot"
        self.out.append(
            f'<defs><clipPath id="{clip}"><rect x="{_n(left)}" y="{_n(top)}"'
            f' width="{_n(right - left)}" height="{_n(bottom - top)}"/></clipPath></defs>'
        )
        self.out.extend(self._trace(trace, i) for i, trace in enumerate(self.traces))

    def _points(self, trace: dict[str, Any]) -> list[tuple[float, float] | None]:
        ax, bx = self.x.scale()
        ay, by = self.y.scale()
        to_x, to_y = self.x.to_l, self.y.to_l
        out: list[tuple[float, float] | None] = []
        for xv, yv in zip(trace.get("x") or [], trace.get("y") or [], strict=False):
            lx, ly = to_x(xv), to_y(yv)
            out.append(None if lx is None or ly is None else (ax * lx + bx, ay * ly + by))
        return out

    def _trace(self, trace: dict[str, Any], index: int) -> str:
        mode = str(trace.get("mode", "lines+markers"))
        points = self._points(trace)
        parts: list[str] = []
        # Lines and error bars are cut at the plot's edge; markers and text too, unless the
        # trace says otherwise (cliponaxis).
        clip = f' clip-path="url(#{self.id}-plot)"'
        if "lines" in mode:
            parts.append(self._line(trace, points, clip))
        if trace.get("error_x") and (trace["error_x"].get("visible", True)):
            parts.append(self._errors(trace, points, clip))
        clip = "" if trace.get("cliponaxis") is False else clip
        if "markers" in mode:
            parts.append(self._markers(trace, points, index, clip))
        if "text" in mode:
            parts.append(self._texts(trace, points, clip))
        opacity = trace.get("opacity")
        extra = f' opacity="{_attr(str(opacity))}"' if opacity not in (None, 1) else ""
        return f'<g class="trace"{extra}>{"".join(parts)}</g>'

    def _line(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        line = trace.get("line") or {}
        width = float(line.get("width", 2))
        step = line.get("shape") == "hv"
        d: list[str] = []
        pen_down = False
        for pt in points:
            if pt is None:
                pen_down = False
                continue
            x, y = _n(pt[0]), _n(pt[1])
            if not pen_down:
                d.append(f"M{x},{y}")
                pen_down = True
            elif step:
                d.append(f"H{x}V{y}")
            else:
                d.append(f"L{x},{y}")
        if not d:
            return ""
        stroke = _stroke(str(line.get("color", "#1f77b4")), width, line.get("dash"))
        return f'<path class="line" d="{"".join(d)}" fill="none"{stroke}{clip}/>'

    def _errors(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        spec = trace["error_x"]
        errors = spec.get("array") or []
        a, _ = self.x.scale()
        cap = float(spec.get("width", 4))
        d = ""
        for pt, err in zip(points, errors, strict=False):
            if pt is None or not err:
                continue
            x, y = pt
            lo, hi = x - abs(a) * float(err), x + abs(a) * float(err)
            d += f"M{_n(lo)},{_n(y)}H{_n(hi)}"
            d += f"M{_n(lo)},{_n(y - cap)}V{_n(y + cap)}M{_n(hi)},{_n(y - cap)}V{_n(y + cap)}"
        if not d:
            return ""
        colour = _attr(str(spec.get("color", "#444")))
        width = float(spec.get("thickness", 2))
        return f'<path d="{d}" fill="none"{_stroke(colour, width)}{clip}/>'

    def _markers(
        self,
        trace: dict[str, Any],
        points: Sequence[tuple[float, float] | None],
        index: int,
        clip: str = "",
    ) -> str:
        marker = trace.get("marker") or {}
        symbol = str(marker.get("symbol", "circle"))
        size = marker.get("size", 6)
        size = float(size if not isinstance(size, list) else size[0])
        # Every marker of a trace is one subpath of a single path, "M x,y" at its centre, then
        # the symbol's outline relative to it: a browser lays out and paints one element per
        # trace (per colour) in a hundredth of the time thousands of <use> or <circle> take.
        outline = _relative(_symbol_path(symbol, size / 2))
        colour = marker.get("color", "#1f77b4")
        per_point: list[str] | None = None
        if isinstance(colour, list):
            scale = _scale_of(marker)
            low, high = _colour_range(marker)
            span = (high - low) or 1.0
            # Shades a step of 1/64 apart (too close to tell): squares of one shade share a path.
            per_point = [
                _colour_at(scale, round((float(c) - low) / span * 64) / 64)
                if isinstance(c, int | float)
                else "#444"
                for c in colour
            ]
            colour = "#444"
        line = marker.get("line") or {}
        open_ = _is_open(symbol)
        if open_:
            paint = 'fill="none"' + _stroke(str(colour), float(line.get("width", 1)))
        else:
            paint = f'fill="{_attr(str(colour))}"'
            if float(line.get("width", 0)) > 0:
                paint += _stroke(str(line.get("color", "#444")), float(line["width"]))
        opacity = marker.get("opacity")
        if opacity is not None and not isinstance(opacity, list):
            paint += f' opacity="{_attr(str(opacity))}"'
        ids = trace.get("customdata") or []
        with_ids = isinstance(ids, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        )
        # Per shade (one shade without a colour scale): its subpaths and their trials' ids.
        shades: dict[str, tuple[list[str], list[str]]] = {}
        for k, pt in enumerate(points):
            if pt is None:
                continue
            shade = per_point[k] if per_point is not None and k < len(per_point) else ""
            subpaths, trials = shades.setdefault(shade, ([], []))
            subpaths.append(f"M{_n(pt[0])},{_n(pt[1])}{outline}")
            if with_ids and k < len(ids):
                trials.append(str(ids[k]))
        paths = []
        for shade, (subpaths, trials) in shades.items():
            fill = f' fill="{shade}"' if shade else ""
            # The trials in the order of the subpaths: a click before Plotly has drawn finds
            # the nearest marker's trial (study.js).
            said = f' data-ids="{" ".join(trials)}"' if trials else ""
            paths.append(f'<path d="{"".join(subpaths)}"{fill}{said}/>')
        return f'<g class="points" {paint}{clip}>{"".join(paths)}</g>'

    def _texts(
        self, trace: dict[str, Any], points: Sequence[tuple[float, float] | None], clip: str
    ) -> str:
        texts = trace.get("text")
        if not isinstance(texts, list):
            texts = [texts] * len(points)
        font = trace.get("textfont") or {}
        fs = float(font.get("size", self.font_size))
        position = str(trace.get("textposition", "middle center"))
        mode = str(trace.get("mode", ""))
        r = 0.0
        if "markers" in mode:
            size = (trace.get("marker") or {}).get("size", 6)
            r = (size if not isinstance(size, list) else size[0]) / 2
        pad = r / 0.8 + 1 if r else 0.0
        dx = {"left": -pad, "right": pad}.get(position.split()[-1], 0.0)
        anchor = {"left": "end", "right": "start"}.get(position.split()[-1], "middle")
        vertical = position.split()[0]
        dy = {"top": -pad - fs * 0.25, "bottom": pad + fs * 0.8}.get(vertical, fs * 0.25)
        body = []
        for pt, text in zip(points, texts, strict=False):
            if pt is None or text is None:
                continue
            body.append(f'<text x="{_n(pt[0] + dx)}" y="{_n(pt[1] + dy)}">{text_of(text)}</text>')
        colour = font.get("color")
        fill = f' fill="{_attr(str(colour))}"' if colour else ""
        head = f'<g class="text" font-size="{_n(fs)}" text-anchor="{anchor}"{fill}{clip}>'
        return head + "".join(body) + "</g>"

    # -- legend, buttons, colour bar --------------------------------------------------------------

    def _legend_items(self) -> list[tuple[int, dict[str, Any]]]:
        items = [
            (i, t)
            for i, t in enumerate(self.all_traces)
            if t.get("visible", True) is not False and t.get("showlegend", True) is not False
        ]
        shown = self.layout.get("showlegend")
        if shown is None:
            shown = len(items) > 1
        if not shown:
            return []
        return sorted(items, key=lambda it: (float(it[1].get("legendrank", 1000)), it[0]))

    def _legend_rows(self, room: float) -> list[list[tuple[float, int, dict[str, Any]]]]:
        """The legend's items laid out in rows (``x`` from the legend's left, the trace's
        index, the trace): side by side, wrapping at ``room``; with legend groups (curves),
        each group is a column of its items, as Plotly lays a grouped horizontal legend."""
        fs = float(
            ((self.layout.get("legend") or {}).get("font") or {}).get("size", self.font_size)
        )
        columns: dict[object, list[tuple[int, dict[str, Any]]]] = {}
        grouped = any(t.get("legendgroup") for _, t in self.legend)
        for i, t in self.legend:
            columns.setdefault(t.get("legendgroup") if grouped else i, []).append((i, t))
        rows: list[list[tuple[float, int, dict[str, Any]]]] = []
        x, first = 0.0, 0
        for column in columns.values():
            width = max(45 + _width(str(t.get("name", f"trace {i}")), fs) for i, t in column)
            if rows and x + width > room:
                first, x = len(rows), 0.0
            for k, (i, t) in enumerate(column):
                while len(rows) <= first + k:
                    rows.append([])
                rows[first + k].append((x, i, t))
            x += width
        return rows

    def _legend_height(self, rows: Sequence[object]) -> float:
        return 10 + LEGEND_ROW * len(rows)

    def _draw_legend(self, rows: list[list[tuple[float, int, dict[str, Any]]]]) -> None:
        if not rows:
            return
        left, top, _, bottom = self.box
        fs = float(
            ((self.layout.get("legend") or {}).get("font") or {}).get("size", self.font_size)
        )
        base = top - 0.02 * (bottom - top) - self._legend_height(rows) + 5
        parts = ['<g class="legend">']
        for r, row in enumerate(rows):
            cy = base + r * LEGEND_ROW + LEGEND_ROW / 2
            for x0, i, t in row:
                x = left + x0
                faded = ' opacity="0.5"' if t.get("visible", True) == "legendonly" else ""
                parts.append(f"<g{faded}>{self._sample(t, x, cy, i)}")
                name = text_of(t.get("name", f"trace {i}"))
                parts.append(
                    f'<text x="{_n(x + 40)}" y="{_n(cy)}" dy=".35em" font-size="{_n(fs)}">'
                    f"{name}</text></g>"
                )
        parts.append("</g>")
        self.out.append("".join(parts))

    def _sample(self, t: dict[str, Any], x: float, cy: float, index: int) -> str:
        mode = str(t.get("mode", "lines+markers"))
        out = ""
        if "lines" in mode:
            line = t.get("line") or {}
            width = min(float(line.get("width", 2)), 5.0)
            out += (
                f'<path d="M{_n(x + 5)},{_n(cy)}H{_n(x + 35)}"'
                f"{_stroke(str(line.get('color', '#1f77b4')), width, line.get('dash'))}/>"
            )
        if "markers" in mode:
            marker = dict(t.get("marker") or {})
            size = marker.get("size", 6)
            marker["size"] = min(16.0, float(size if not isinstance(size, list) else size[0]))
            if isinstance(marker.get("color"), list):
                marker["color"] = _colour_at(_scale_of(marker), 0.5)
            fake = {"marker": marker, "x": [0], "y": [0]}
            body = self._markers(fake, [(x + 20, cy)], 1000 + index)
            out += body.replace(
                f'id="{self.id}-m{1000 + index}"', f'id="{self.id}-l{index}"'
            ).replace(f'href="#{self.id}-m{1000 + index}"', f'href="#{self.id}-l{index}"')
        return out

    def _menu_buttons(self) -> list[tuple[str, bool, float]]:
        out = []
        for menu in self.layout.get("updatemenus") or []:
            fs = float((menu.get("font") or {}).get("size", self.font_size))
            active = menu.get("active", 0)
            for k, button in enumerate(menu.get("buttons") or []):
                out.append((str(button.get("label", "")), k == active, fs))
        return out

    def _menu_height(self) -> float:
        return 3 * max((fs for _, _, fs in self.menus), default=0.0)  # as Plotly sizes one

    def _draw_menus(self) -> None:
        if not self.menus:
            return
        _, top, right, bottom = self.box
        widths = [_width(label, fs) + 24 for label, _, fs in self.menus]
        height = self._menu_height()
        x = right + 1 - sum(widths) - 2 * (len(widths) - 1)
        y = top - 0.02 * (bottom - top) - height
        parts = ['<g class="menu">']
        for (label, active, fs), w in zip(self.menus, widths, strict=True):
            fill = "#F4FAFF" if active else "#ffffff"
            parts.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(height)}" rx="2"'
                f' fill="{fill}" stroke="#BEC8D9"/>'
                f'<text x="{_n(x + 12)}" y="{_n(y + height * 0.59)}" font-size="{_n(fs)}">'
                f"{text_of(label)}</text>"
            )
            x += w + 2
        parts.append("</g>")
        self.out.append("".join(parts))

    def _bar_ticks(self, marker: dict[str, Any], length: float) -> list[tuple[float, str]]:
        low, high = _colour_range(marker)
        if high <= low:
            return [(low, _number(low, 0.0, {}))]
        values = _linear_ticks(low, high, max(4.0, min(9.0, length / 40.0)) + 1)
        step = values[1] - values[0] if len(values) > 1 else high - low
        return [(v, _number(v, step, {"separatethousands": True})) for v in values]

    def _bar_width(self) -> float:
        assert self.bar is not None
        thickness = float((self.bar.get("colorbar") or {}).get("thickness", 30))
        ticks = self._bar_ticks(self.bar, self.h)
        label_w = max((_width(t, self.font_size) for _, t in ticks), default=0.0)
        title = str(((self.bar.get("colorbar") or {}).get("title") or {}).get("text") or "")
        title_w = _width(title, round(self.font_size * 1.2))
        return 10 + max(thickness + 4 + label_w, title_w) + 10 + 12

    def _draw_bar(self, marker: dict[str, Any]) -> None:
        left, top, right, bottom = self.box
        bar = marker.get("colorbar") or {}
        thickness = float(bar.get("thickness", 30))
        title = str((bar.get("title") or {}).get("text") or "")
        x = right + 0.02 * (right - left) + 10
        fs = self.font_size
        ts = round(fs * 1.2)
        # Plotly's bar: 10 px in from the plot's top and bottom, its title on top.
        bar_top = top + 10 + (ts * 1.5 if title else 0)
        length = bottom - 10 - bar_top
        scale = _scale_of(marker)
        grad = f"{self.id}-scale"
        stops = "".join(
            f'<stop offset="{_n(100 * k / (len(scale) - 1))}%" stop-color="{c}"/>'
            for k, c in enumerate(reversed(scale))
        )
        parts = [
            f'<defs><linearGradient id="{grad}" x1="0" y1="0" x2="0" y2="1">{stops}'
            "</linearGradient></defs>",
            f'<g class="colorbar"><rect x="{_n(x)}" y="{_n(bar_top)}" width="{_n(thickness)}"'
            f' height="{_n(length)}" fill="url(#{grad})" stroke="#444"/>',
        ]
        if title:
            parts.append(
                f'<text x="{_n(x)}" y="{_n(top + 10 + ts * 0.97)}" font-size="{ts}">'
                f"{text_of(title)}</text>"
            )
        low, high = _colour_range(marker)
        span = (high - low) or 1.0
        for v, text in self._bar_ticks(marker, length):
            y = bar_top + length - (v - low) / span * length
            parts.append(
                f'<text x="{_n(x + thickness + 3.4)}" y="{_n(y)}" dy=".35em">{text_of(text)}</text>'
            )
        parts.append("</g>")
        self.out.append("".join(parts))
