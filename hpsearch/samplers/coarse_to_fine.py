"""Coarse to fine: sample the whole space at random, zoom into where the best trials are, repeat.

Spec keys (``sampler: {kind: coarse_to_fine, ...}``):

- ``rounds`` (default 3): how many regions the search goes through. Round 1 is the whole space.
- ``trials_per_round`` (default 20): trial numbers ``[r * n, (r + 1) * n)`` belong to round
  ``r`` (0-based). Trials past the last round keep sampling in the last region until the budget
  ends.
- ``top_k`` (at most ``trials_per_round``): how many of the best trials of the rounds so far
  span the next region. They are picked by the study's ranking rule
  (:func:`hpsearch.objective.rank`): feasible trials first by the optimizing metric; when fewer
  than ``top_k`` are feasible, the least-violating infeasible ones fill the rest. By default it
  adapts (:func:`adaptive_top_k`): ``1 + ceil(d / 3)`` for ``d`` numeric parameters (2 in two
  dimensions, 3 in four to six), and the round's spread decides the rest: every trial that ties
  with the last one picked spans the region too, so a round whose values do not tell its
  trials apart (a flat objective) does not zoom at all.
- ``margin`` (default 0.1): each numeric interval is the span of the top trials widened, on each
  side, by ``margin`` times the width of the current region. A region therefore never collapses
  to a point, and an optimum just past the top trials stays reachable. Being relative to the
  current region, the margin shrinks with it.

Why these defaults: the bounding box of ``k`` points spans about ``(k - 1) / (k + 1)`` of each
dimension, so a fixed ``top_k: 5`` barely zooms in two dimensions where the top trials sit in
different basins (Branin has three minima), while in six dimensions a few more points than two
keep one lucky-but-narrow dimension from excluding the optimum. docs/performance.md has the
measurements (bench/search_efficiency.py).
- ``seed``: per-trial randomness comes from ``(seed, trial number)``, so a seeded study is
  reproducible however the claims of parallel workers interleave.

Shrinking happens in each parameter's unit interval (:meth:`Param.to_unit`), i.e. in its own
scale: a log-scaled learning rate shrinks in decades, a reverse_log β in ``log10(1 - β)``.
Intervals are clipped to the original bounds. A categorical keeps the choices seen among the
top trials.

Only completed trials rank (failed ones carry no value; pruned ones stopped early, so their
value is not comparable), and a completed trial whose satisficing metrics were never measured
(infinite violation) carries no information either. With no ranked trial, a round keeps the
previous region.

A round's region is a pure function of the finished trials of the earlier rounds. With parallel
workers the first trials of a round may be proposed while the last trials of the previous round
still run; the region is recomputed as they finish, so the region :func:`regions` shows is the
one built from every finished trial of the earlier rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from hpsearch.objective import Direction, Objective, rank
from hpsearch.samplers.base import FinishedTrial, History, Params, Running, Sampler
from hpsearch.samplers.random import trial_rng
from hpsearch.space import CategoricalParam, Interval, Param, ParamValue, Space
from hpsearch.spec import CoarseToFineSamplerSpec, StudySpec
from hpsearch.states import TrialState

T = TypeVar("T", bound=FinishedTrial)


@dataclass(frozen=True)
class Rounds:
    """The spec keys, validated by :class:`hpsearch.spec.CoarseToFineSamplerSpec`."""

    rounds: int = 3
    trials_per_round: int = 20
    top_k: int | None = None  # None: adaptive_top_k, with ties
    margin: float = 0.1

    def round_of(self, number: int) -> int:
        """The 0-based round trial ``number`` belongs to; the last round never ends."""
        return min(number // self.trials_per_round, self.rounds - 1)

    def first_number(self, round_index: int) -> int:
        return round_index * self.trials_per_round


@dataclass(frozen=True)
class ParamRegion:
    """One parameter's part of a region: an interval of its unit scale, or kept choices."""

    interval: Interval | None = None
    choices: tuple[ParamValue, ...] | None = None


@dataclass(frozen=True)
class Region:
    """The part of the space one round samples from, and the trials that spanned it."""

    round: int
    params: dict[str, ParamRegion]
    based_on: tuple[int, ...] = ()

    def volume(self) -> float:
        """The product of the numeric parameters' widths in unit space."""
        out = 1.0
        for p in self.params.values():
            if p.interval is not None:
                out *= p.interval.width
        return out


def full_region(space: Space) -> Region:
    return Region(0, {name: _full(p) for name, p in space.items()})


def _full(param: Param) -> ParamRegion:
    if isinstance(param, CategoricalParam):
        return ParamRegion(choices=param.choices)
    return ParamRegion(interval=Interval())


def shrink_interval(previous: Interval, units: Sequence[float], margin: float) -> Interval:
    """The span of ``units`` widened by ``margin`` × the previous width, clipped to [0, 1]."""
    pad = margin * previous.width
    # Clamped first: a scale's round trip may land a hair outside [0, 1].
    lo = max(0.0, min(1.0, min(units)) - pad)
    hi = min(1.0, max(0.0, max(units)) + pad)
    return Interval(lo, hi)


def kept_choices(param: CategoricalParam, seen: Sequence[ParamValue]) -> tuple[ParamValue, ...]:
    """The choices seen among the top trials, in the order the space lists them."""
    indices = {param.index(v) for v in seen if param.contains(v)}
    return tuple(c for i, c in enumerate(param.choices) if i in indices)


def next_region(
    space: Space,
    previous: Region,
    top: Sequence[Mapping[str, ParamValue]],
    margin: float,
    round_index: int,
    based_on: tuple[int, ...] = (),
) -> Region:
    """The region spanned by the params of the ``top`` trials, parameter by parameter.

    A parameter none of the top trials set (or set inside the space) keeps its previous part.
    """
    params: dict[str, ParamRegion] = {}
    for name, param in space.items():
        seen = [t[name] for t in top if name in t and param.contains(t[name])]
        before = previous.params.get(name, _full(param))
        if not seen:
            params[name] = before
        elif isinstance(param, CategoricalParam):
            params[name] = ParamRegion(choices=kept_choices(param, seen))
        else:
            units = [param.to_unit(v) for v in seen]
            params[name] = ParamRegion(
                interval=shrink_interval(before.interval or Interval(), units, margin)
            )
    return Region(round_index, params, based_on)


def sample_in(space: Space, region: Region, rng: np.random.Generator) -> dict[str, ParamValue]:
    """One point drawn uniformly from ``region`` in each parameter's unit scale."""
    return {
        name: sample_param(param, region.params[name], float(rng.random()))
        for name, param in space.items()
    }


def sample_param(param: Param, part: ParamRegion, u: float) -> ParamValue:
    """The value at ``u`` in [0, 1) of one parameter's part of a region."""
    if isinstance(param, CategoricalParam):
        choices = part.choices or param.choices
        return choices[min(int(u * len(choices)), len(choices) - 1)]
    interval = part.interval or Interval()
    return param.from_unit(interval.lo + u * interval.width)


def ranked_candidates(history: Sequence[FinishedTrial], below: int) -> list[FinishedTrial]:
    """The trials numbered below ``below`` that can rank (see the module docstring)."""
    return [
        t
        for t in history
        if t.number < below
        and t.state == TrialState.COMPLETED
        and ((t.feasible and t.value is not None) or math.isfinite(t.violation))
    ]


def regions(
    space: Space,
    direction: Direction,
    config: Rounds,
    history: Sequence[FinishedTrial],
    upto: int | None = None,
) -> list[Region]:
    """Every round's region (rounds ``0 .. upto``, default all), from the finished trials."""
    last = config.rounds - 1 if upto is None else min(upto, config.rounds - 1)
    out = [full_region(space)]
    for r in range(1, last + 1):
        pool = ranked_candidates(history, config.first_number(r))
        top = top_trials(rank(pool, direction), config, numeric_dimensions(space))
        if not top:
            out.append(Region(r, dict(out[-1].params)))
            continue
        params = [t.params for t in top]
        based_on = tuple(t.number for t in top)
        out.append(next_region(space, out[-1], params, config.margin, r, based_on))
    return out


def numeric_dimensions(space: Space) -> int:
    return sum(not isinstance(p, CategoricalParam) for p in space.values())


def adaptive_top_k(dimensions: int, trials_per_round: int) -> int:
    """The default ``top_k`` for ``dimensions`` numeric parameters (see the module docstring)."""
    return max(1, min(trials_per_round, 1 + math.ceil(dimensions / 3)))


def top_trials(ranked: Sequence[T], config: Rounds, dimensions: int) -> list[T]:
    """The trials that span the next region, from ``ranked`` (best first): the ``top_k`` given,
    or the adaptive count and every trial tied with the last of them."""
    if config.top_k is not None:
        return list(ranked[: config.top_k])
    k = adaptive_top_k(dimensions, config.trials_per_round)
    top = list(ranked[:k])
    if top:
        last = _rank_key(top[-1])
        top += [t for t in ranked[k:] if _rank_key(t) == last]
    return top


def _rank_key(trial: FinishedTrial) -> tuple[bool, float | None]:
    """What the ranking rule compares: the value of a feasible trial, the violation of another."""
    return (True, trial.value) if trial.feasible else (False, trial.violation)


class CoarseToFine(Sampler):
    """The ``coarse_to_fine`` sampler of a study (the Optuna flavour is CoarseToFineSampler).

    It keeps, per round, the region it last computed and the candidate count it was computed
    from, so a study with 10 000 finished trials re-ranks nothing while the earlier rounds'
    results stay the same.
    """

    def __init__(
        self, space: Space, objective: Objective, config: Rounds, seed: int | None = None
    ) -> None:
        super().__init__(space, objective)
        self.config = config
        self.seed = seed
        self._cache: dict[int, tuple[tuple[int, int], list[Region]]] = {}

    def region_for(self, number: int, history: Sequence[FinishedTrial]) -> Region:
        r = self.config.round_of(number)
        if r == 0:
            return full_region(self.space)
        # Finished trials never change, so the candidates below the round's first number are
        # identified by how many there are and which (the sum of their numbers).
        pool = ranked_candidates(history, self.config.first_number(r))
        key = (len(pool), sum(t.number for t in pool))
        cached = self._cache.get(r)
        if cached is None or cached[0] != key:
            cached = (key, regions(self.space, self.objective.direction, self.config, history, r))
            self._cache[r] = cached
        return cached[1][r]

    def propose(self, number: int, history: History, running: Running) -> Params:
        region = self.region_for(number, history)
        return sample_in(self.space, region, trial_rng(self.seed, number))


def study_rounds(spec: StudySpec) -> Rounds | None:
    """The rounds of a coarse_to_fine study, or None for another sampler."""
    cfg = spec.sampler
    if not isinstance(cfg, CoarseToFineSamplerSpec):
        return None
    return Rounds(cfg.rounds, cfg.trials_per_round, cfg.top_k, cfg.margin)


def study_regions(
    spec: StudySpec, history: Sequence[FinishedTrial], trials_created: int
) -> list[Region]:
    """The regions of the rounds a coarse_to_fine study has begun (none for other samplers)."""
    config = study_rounds(spec)
    if config is None:
        return []
    begun = config.round_of(max(trials_created - 1, 0))
    return regions(spec.build_space(), spec.objective.direction, config, history, begun)
