"""Population-based training (Jaderberg et al., 2017): "Panda" and "Caviar" at once.

A population of trials trains in parallel (Caviar); every ``interval`` epochs, a trial in the
bottom ``quantile`` of the trials at that epoch stops and is replaced by a copy of a top trial's
checkpoint that goes on with perturbed hyperparameters (Panda: resume a good model with a
changed learning rate). What is kept is a *schedule*: the hyperparameters each surviving
lineage used over time.

This module is the pure part, like the pruners: which trials are in which quantile, and how one
set of hyperparameters is perturbed. The store decides when (:mod:`hpsearch.store.pbt`).

Perturbation happens in each parameter's own scale (the space's ``scale``), since that is the
scale the parameter acts in:

- ``log`` (a learning rate): the value is multiplied by a factor of ``perturb`` (0.8 or 1.2);
- ``reverse_log`` (an averaging coefficient β): ``1 - β`` is multiplied, so β = 0.99 moves to
  0.992 or 0.988, never past 1: the averaging window ``1 / (1 - β)`` scales by the factor;
- ``linear``: multiplied when its range is ≥ 0, as Ray Tune does; a range reaching below 0
  moves by ``(factor - 1)`` times half its width instead (a sign must not decide the
  direction);
- integers as their scale says, then rounded to their step; every result is clipped to the
  parameter's bounds;
- categoricals keep their value, and with probability ``resample_probability`` (numbers too)
  a parameter is drawn afresh from the space instead, in its own scale.

Ranking follows Ray Tune's PBT: with ``n`` trials at an epoch, the bottom and the top quantiles
hold ``ceil(n · quantile)`` trials each (at most ``n // 2``). A value that is not a number
(diverged) ranks last.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpsearch.objective import Direction
from hpsearch.space import CategoricalParam, FloatParam, IntParam, ParamValue, Space


@dataclass(frozen=True)
class Pbt:
    """The ``scheduler: {kind: pbt}`` keys (validated by ``hpsearch.spec.PbtSchedulerSpec``)."""

    population: int = 8
    interval: int = 2
    quantile: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def judges(self, step: int) -> bool:
        """Whether a trial reporting ``step`` may be exploited there."""
        return step % self.interval == 0


def quantiles(
    values: Mapping[int, float | None], quantile: float, direction: Direction
) -> tuple[list[int], list[int]]:
    """(bottom, top): the trial numbers of the worst and of the best quantile of ``values``
    (per trial number), each worst first. Ties go to the lower number as the better."""
    sign = 1.0 if direction == "maximize" else -1.0

    def goodness(number: int) -> tuple[float, int]:
        v = values[number]
        return (-math.inf if v is None or math.isnan(v) else sign * v, -number)

    ranked = sorted(values, key=goodness)  # worst first
    n = quantile_size(len(ranked), quantile)
    return ranked[:n], ranked[len(ranked) - n :] if n else []


def quantile_size(n: int, quantile: float) -> int:
    """How many of ``n`` trials each quantile holds: ``ceil(n · quantile)``, at most ``n // 2``."""
    return min(math.ceil(n * quantile - 1e-9), n // 2)


def donors(
    config: Pbt, number: int, values: Mapping[int, float | None], direction: Direction
) -> list[int]:
    """The trials that trial ``number`` would copy (the top quantile), or none when it is not
    in the bottom quantile of ``values`` (every trial's value at the epoch, its own included).

    Asynchronous, like ASHA: the first trials to reach an epoch meet fewer others there. Until
    ``1 / quantile`` have (4 for 0.25), none is judged: with two trials, the worse one would
    otherwise always go, on a single comparison."""
    if len(values) * config.quantile < 1 - 1e-9:
        return []
    bottom, top = quantiles(values, config.quantile, direction)
    return top if number in bottom else []


def perturb(
    space: Space,
    params: Mapping[str, ParamValue],
    config: Pbt,
    rng: np.random.Generator,
    frozen: Collection[str] = (),
) -> dict[str, ParamValue]:
    """``params`` explored: each parameter of the space but the ``frozen`` ones (those that
    shape the network a copied checkpoint holds) resampled or perturbed, as the module says."""
    out = dict(params)
    for name, param in space.items():
        if name in frozen or name not in params:
            continue
        if rng.random() < config.resample_probability:
            out[name] = param.from_unit(float(rng.random()))
        elif not isinstance(param, CategoricalParam):
            factor = float(config.perturb[int(rng.integers(len(config.perturb)))])
            out[name] = perturb_value(param, params[name], factor)
    return out


def perturb_value(param: FloatParam | IntParam, value: ParamValue, factor: float) -> ParamValue:
    """One number moved by ``factor`` in its parameter's scale, kept inside its bounds and on
    its step."""
    x = float(value)
    if param.scale == "reverse_log":
        moved = 1.0 - (1.0 - x) * factor
    elif param.scale == "log" or param.low >= 0:
        moved = x * factor
    else:
        moved = x + (factor - 1.0) * (param.high - param.low) / 2
    clipped = min(max(moved, param.low), param.high)
    if isinstance(param, IntParam) or param.step is not None:
        return param.from_unit(param.to_unit(clipped))  # rounds to the step, in its scale
    return clipped


def exploit_rng(
    seed: int | None, study_name: str, number: int, step: int, stream: int = 0
) -> np.random.Generator:
    """The randomness of one exploit of trial ``number`` at ``step`` (stream 0: which donor,
    1: which perturbation): from the sampler's seed, or the study's name, so a study replays
    its exploits however its workers interleave."""
    base = seed if seed is not None else zlib.crc32(study_name.encode())
    return np.random.default_rng([base, number, step, stream])


@dataclass(frozen=True)
class Segment:
    """One stretch of a final trial's schedule: the epochs ``first .. last`` trained by trial
    ``trial_id`` (number ``number``) with ``params``."""

    first: int
    last: int | None
    trial_id: int
    number: int
    params: dict[str, ParamValue]


@dataclass(frozen=True)
class Link:
    """A trial's place in its lineage: it started from ``parent_id``'s checkpoint at ``step``
    (None: a first-generation trial, trained from scratch)."""

    trial_id: int
    number: int
    params: dict[str, ParamValue]
    parent_id: int | None
    step: int | None
    last_step: int | None = None  # the last epoch it reported


def schedule(trial_id: int, links: Mapping[int, Link], last: int | None) -> list[Segment]:
    """The hyperparameters trial ``trial_id``'s model was trained with, oldest first: each
    ancestor's params over the epochs it trained before its descendant copied it. ``last``:
    the trial's own last epoch (None while unknown)."""
    chain: list[Link] = []
    seen: set[int] = set()
    at: int | None = trial_id
    while at is not None and at in links and at not in seen:
        seen.add(at)
        chain.append(links[at])
        at = links[at].parent_id
    chain.reverse()
    out: list[Segment] = []
    for i, link in enumerate(chain):
        first = 1 if link.step is None else link.step + 1
        until = chain[i + 1].step if i + 1 < len(chain) else last
        out.append(Segment(first, until, link.trial_id, link.number, dict(link.params)))
    return out


def stored(segments: Sequence[Segment]) -> list[dict[str, object]]:
    """A schedule as a replay keeps it (``trials.schedule``, a claim's ``schedule``): each
    stretch's first epoch and params; each ends where the next begins, the last at the end."""
    return [{"first_epoch": s.first, "params": dict(s.params)} for s in segments]


def stretches(
    schedule: Sequence[Mapping[str, object]], epochs: int
) -> list[tuple[int, int, dict[str, ParamValue]]]:
    """A stored schedule as (first epoch, last epoch, params), the last stretch to ``epochs``:
    what a worker trains, stretch by stretch, for a replayed trial."""
    firsts = [int(str(s["first_epoch"])) for s in schedule]
    lasts = [f - 1 for f in firsts[1:]] + [epochs]
    return [
        (first, last, dict(s["params"]))  # type: ignore[call-overload]
        for first, last, s in zip(firsts, lasts, schedule, strict=True)
    ]


def replay(segments: Sequence[Segment], epoch: int) -> dict[str, ParamValue]:
    """The hyperparameters a schedule trains epoch ``epoch`` with (replaying it: a trainer that
    changes them as it goes, or a chain of forks at the segments' ends)."""
    current = segments[0].params
    for segment in segments:
        if segment.first <= epoch:
            current = segment.params
    return dict(current)
