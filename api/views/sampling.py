"""Which trials a plot draws: all of them up to a limit, a faithful subset beyond it.

A browser draws a few thousand SVG points comfortably; a study may hold 100 000 trials. The
subset keeps what a reader looks for: the best trials, every point where the best-so-far line
moves, and for each stretch of trial numbers its lowest and highest value and a uniform
sample of the rest, so the spread of the cloud, its density and its outliers survive. It is
deterministic: a page that refreshes does not shuffle its points.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence

from hpsearch.objective import Direction
from hpsearch.store.results import TrialPoint

PLOT_LIMIT = 2000
# What the study page draws first: under figures.GL_POINTS, so every plot is SVG. Setting up a
# WebGL context per plot, not the points, was most of a first paint on a machine without a
# GPU (docs/performance.md); the reader asks for PLOT_LIMIT when the cloud needs it.
FIRST_PAINT = 600
TOP_KEPT = 100


def top_trials(points: Sequence[TrialPoint], direction: Direction, k: int) -> list[TrialPoint]:
    """The ``k`` best completed trials by the study's ranking rule (objective.rank_key):
    feasible ones by value, then infeasible ones by how far they miss; ties to the earlier."""
    sign = -1.0 if direction == "maximize" else 1.0
    feasible = [p for p in points if p.state == "completed" and p.feasible and has_value(p)]
    best = heapq.nsmallest(k, feasible, key=lambda p: (sign * _value(p), p.number))
    if len(best) < k:
        taken = {p.id for p in best}
        rest = [p for p in points if p.state == "completed" and p.id not in taken]
        best += heapq.nsmallest(
            k - len(best),
            rest,
            key=lambda p: (
                math.inf if p.violation is None else p.violation,
                sign * _value(p) if has_value(p) else math.inf,
                p.number,
            ),
        )
    return best


def has_value(p: TrialPoint) -> bool:
    return p.state in ("completed", "pruned") and p.value is not None and math.isfinite(p.value)


def best_so_far(points: Sequence[TrialPoint], direction: Direction) -> list[tuple[int, float]]:
    """The best feasible value after each trial, as the steps of a line: one point per
    improvement plus one at the last trial so the line reaches the right edge.

    Exact for any number of trials (it is O(n), and the steps are few), so a downsampled
    cloud still sits under the true line.
    """
    steps: list[tuple[int, float]] = []
    best: float | None = None
    last = None
    for p in sorted(points, key=lambda q: q.number):
        last = p.number
        if p.state != "completed" or not p.feasible or not has_value(p):
            continue
        assert p.value is not None
        if best is None or (p.value > best if direction == "maximize" else p.value < best):
            best = p.value
            steps.append((p.number, best))
    if steps and last is not None and steps[-1][0] != last:
        steps.append((last, steps[-1][1]))
    return steps


def plot_sample(
    points: Sequence[TrialPoint],
    direction: Direction,
    limit: int = PLOT_LIMIT,
    top: int = TOP_KEPT,
    per_stretch: int = 10,
) -> list[TrialPoint]:
    """At most about ``limit`` of ``points`` (those with a value), by number.

    Kept always: the ``top`` best by the ranking rule and the best-so-far steps. The rest of
    the budget is spread over equal stretches of trial numbers; each stretch keeps its lowest
    and highest value and a uniform sample, about ``per_stretch`` trials in all, so both the
    spread of the cloud and its density survive.
    """
    valued = sorted((p for p in points if has_value(p)), key=lambda p: p.number)
    if len(valued) <= limit:
        return valued
    top = min(top, limit // 2)
    keep: set[int] = {p.id for p in top_trials(valued, direction, top)}
    improving = {n for n, _ in best_so_far(valued, direction)}
    keep |= {p.id for p in valued if p.number in improving}
    rest = [p for p in valued if p.id not in keep]
    stretches = max(1, (limit - len(keep)) // per_stretch)
    size = max(1, math.ceil(len(rest) / stretches))
    for start in range(0, len(rest), size):
        chunk = rest[start : start + size]
        keep.add(min(chunk, key=_value).id)
        keep.add(max(chunk, key=_value).id)
        # A uniform sample of the rest keeps the density honest (fixed quantiles would line
        # up across stretches into false bands); seeded by position, so it is repeatable.
        others = random.Random(start).sample(chunk, min(len(chunk), per_stretch - 2))
        keep.update(p.id for p in others)
    return [p for p in valued if p.id in keep]


def _value(p: TrialPoint) -> float:
    return p.value if p.value is not None else -math.inf
