"""The posters' cartesian axes as Plotly lays them out: how a value maps to pixels (linear,
log, category, date), the autorange and its padding, and the ticks and their labels."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.views.poster_text import text_of
from api.views.style import nice_step


@dataclass
class Axis:
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
            return epoch_ms(value)
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


def epoch_ms(value: Any) -> float | None:
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


def axis_kind(spec: dict[str, Any], values: Sequence[Any]) -> str:
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


def categories(spec: dict[str, Any], values: Sequence[Any]) -> dict[str, int]:
    """A category axis's positions: ``categoryarray``'s order, then the rest as first seen
    (from the bottom up on y, as Plotly places them)."""
    order: dict[str, int] = {}
    for v in [*(spec.get("categoryarray") or []), *values]:
        if v is not None:
            order.setdefault(str(v), len(order))
    return order


def autorange(
    axis: Axis, extremes: Sequence[tuple[float, float, float]], length: float, letter: str
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


def linear_ticks(lo: float, hi: float, count: float, dtick: Any = None) -> list[float]:
    low, high = min(lo, hi), max(lo, hi)
    step = float(dtick) if isinstance(dtick, int | float) and dtick > 0 else 0.0
    if not step:
        step = nice_step((high - low) / max(count, 1.0))
    first = math.ceil(low / step - 1e-9)
    return [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)][:200]


def tick_number(value: float, step: float, spec: dict[str, Any]) -> str:
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


def tick_text(text: str, powers: bool) -> str:
    """A tick label as SVG; on a log axis (``powers``) an exponent (``10⁻³``) raised and
    smaller, as Plotly draws it."""
    base = text.rstrip("⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    if base == text or not powers:
        return text_of(text)
    power = text[len(base) :].translate(_PLAIN)
    return f'{text_of(base)}<tspan dy="-.6em" font-size="70%">{power}</tspan>'


def tick_size(axis: Axis, at: float, text: str) -> float:
    """A tick label's font, in the axis's font size: on a log axis ticked by ``dtick``, Plotly
    writes the powers of ten a size up and the digits between them a size down."""
    if axis.kind != "log" or axis.spec.get("tickvals") is not None:
        return 1.0
    if abs(at - round(at)) > 1e-9:
        return 0.75
    return 1.25 if axis.spec.get("exponentformat") == "power" else 1.0


def _log_ticks(axis: Axis, count: float) -> list[tuple[float, str]]:
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


def axis_ticks(axis: Axis, length: float, letter: str) -> list[tuple[float, str]]:
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
                label = texts[i] if i < len(texts) else tick_number(float(v), 0.0, spec)
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
    values = linear_ticks(axis.lo, axis.hi, count, spec.get("dtick"))
    step = values[1] - values[0] if len(values) > 1 else abs(axis.hi - axis.lo)
    return [(v, tick_number(v, step, spec)) for v in values]
