"""Iso-lines of a grid of values (marching squares): the contour lines of the study page's
two-parameter plot, drawn as plain line segments because the Plotly bundle the page loads has
no contour trace.

Corners are the grid's cells' centres; a cell with a missing corner (no trial near) draws no
line, so lines stop where the map does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from api.views.style import nice_step

Point = tuple[float, float]
Segment = tuple[Point, Point]


def levels(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round values strictly between ``low`` and ``high`` (1, 2 or 5 times a
    power of ten apart), as a colour bar's ticks."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return []
    step = nice_step((high - low) / (count + 1))
    first = math.floor(low / step + 1) * step
    out = []
    k = 0
    while (value := round(first + k * step, 12)) < high:
        if value > low:
            out.append(value)
        k += 1
    return out


def isolines(values: NDArray[np.float64], level: float) -> list[Segment]:
    """Segments where ``values`` (indexed [i, j], NaN where unknown) crosses ``level``, in
    fractional index coordinates (i, j)."""
    segments: list[Segment] = []
    nx, ny = values.shape
    above = values > level
    for i in range(nx - 1):
        for j in range(ny - 1):
            a, b, c, d = values[i, j], values[i + 1, j], values[i + 1, j + 1], values[i, j + 1]
            if math.isnan(a + b + c + d):
                continue
            ups = (above[i, j], above[i + 1, j], above[i + 1, j + 1], above[i, j + 1])
            if all(ups) or not any(ups):
                continue
            # Where each edge crosses the level: bottom a–b, right b–c, top d–c, left a–d.
            edges: dict[str, Point] = {}
            if ups[0] != ups[1]:
                edges["bottom"] = (i + _at(a, b, level), float(j))
            if ups[1] != ups[2]:
                edges["right"] = (float(i + 1), j + _at(b, c, level))
            if ups[3] != ups[2]:
                edges["top"] = (i + _at(d, c, level), float(j + 1))
            if ups[0] != ups[3]:
                edges["left"] = (float(i), j + _at(a, d, level))
            if len(edges) == 2:
                first, second = edges.values()
                segments.append((first, second))
                continue
            # A saddle: the cell's mean tells which diagonal pair is joined across it.
            if ((a + b + c + d) / 4 > level) == ups[0]:
                pairs = (("bottom", "right"), ("left", "top"))  # cut off b and d
            else:
                pairs = (("bottom", "left"), ("right", "top"))  # cut off a and c
            segments += [(edges[p], edges[q]) for p, q in pairs]
    return segments


def _at(start: float, end: float, level: float) -> float:
    """How far from ``start`` to ``end`` (0..1) the level lies, linearly."""
    return float((level - start) / (end - start))


def along(centres: Sequence[float], index: float, log: bool) -> float:
    """A fractional cell index as an axis value: between two cells' centres, linearly on the
    axis's own scale (in log10 on a log axis)."""
    k = min(max(math.floor(index), 0), len(centres) - 2)
    t = index - k
    low, high = centres[k], centres[k + 1]
    if log:
        return float(10 ** (math.log10(low) * (1 - t) + math.log10(high) * t))
    return low * (1 - t) + high * t
