"""Parameter importance: how much of the objective's variation each parameter explains alone.

For each parameter the finished trials are grouped by its value *in the parameter's own scale*
(quantile bins of the unit coordinate for numbers, one group per value for categoricals and
small integer ranges), and the share of the objective's variance between the groups is
estimated with omega squared, which subtracts what grouping pure noise would explain:

    ω² = (SS_between − (k − 1)·MS_within) / (SS_total + MS_within),   clipped at 0.

So a parameter that does not matter scores near 0 whatever the number of trials, and a
parameter that decides the objective alone scores near 1. This is a first-order (main effect)
measure, like the first-order terms fANOVA reports; interactions are not attributed. Beyond
``max_trials`` trials a seeded uniform subsample is used: the estimate's standard error is
already about 1/sqrt(n), and a study with 100 000 trials stays quick to read.

Each score comes with a bootstrap standard error (the trials resampled with replacement), so
a reader sees how far a ranking from a few dozen trials can be trusted; below
``TRUSTED_TRIALS`` the web view says there are too few trials rather than rank them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hpsearch.space import CategoricalParam, ParamValue, Space, SpaceError

MIN_TRIALS = 8
# Below this many trials the scores' standard errors are about as large as the scores.
TRUSTED_TRIALS = 30
MAX_TRIALS = 5000
BOOTSTRAP = 20
MAX_BINS = 10
# Integer parameters with at most this many distinct values are grouped by value.
_MAX_LEVELS = 20


@dataclass(frozen=True)
class Importance:
    """``scores[name]``: the variance share explained by that parameter alone (0..1).

    ``shares`` normalizes the scores to sum to 1 (how fANOVA-style charts are read);
    ``n_trials`` is how many trials the estimate used, ``n_given`` how many usable trials
    there were (more, when a sample was taken); ``errors[name]`` is the score's bootstrap
    standard error.
    """

    scores: dict[str, float]
    n_trials: int
    errors: dict[str, float] = field(default_factory=dict)
    n_given: int = 0

    @property
    def shares(self) -> dict[str, float]:
        total = sum(self.scores.values())
        if total <= 0:
            return {name: 0.0 for name in self.scores}
        return {name: s / total for name, s in self.scores.items()}

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))


def importance(
    space: Space,
    params: Sequence[Mapping[str, ParamValue]],
    values: Sequence[float],
    max_trials: int = MAX_TRIALS,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP,
) -> Importance | None:
    """Importance of each parameter of ``space`` for ``values``; ``None`` below MIN_TRIALS.

    Trials whose value is not finite, or whose parameters fall outside the space (a spec
    edited since), are left out.
    """
    if len(params) != len(values):
        raise ValueError(f"{len(params)} parameter sets but {len(values)} values")
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    rows: list[tuple[list[float], float]] = []
    for i in finite:
        coords = _coordinates(space, params[i])
        if coords is not None:
            rows.append((coords, values[i]))
    given = len(rows)
    if given > max_trials:
        rows = [rows[i] for i in sorted(random.Random(seed).sample(range(given), max_trials))]
    if len(rows) < MIN_TRIALS:
        return None
    x = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    groups = [_groups(x[:, j], space[name]) for j, name in enumerate(space)]
    scores = {name: omega_squared(groups[j], y) for j, name in enumerate(space)}
    # The groups stay those of the whole sample: the bootstrap measures the noise of the
    # estimate given the bins, as a reader of this chart would compare the bars.
    draws = np.random.default_rng(seed).integers(0, len(y), size=(bootstrap, len(y)))
    errors = {
        name: float(np.std([omega_squared(groups[j][d], y[d]) for d in draws], ddof=1))
        if bootstrap > 1
        else 0.0
        for j, name in enumerate(space)
    }
    return Importance(scores, len(rows), errors, given)


def omega_squared(groups: np.ndarray, y: np.ndarray) -> float:
    """Bias-corrected share of the variance of ``y`` between the ``groups`` (labels)."""
    n = len(y)
    labels, index = np.unique(groups, return_inverse=True)
    k = len(labels)
    if k < 2 or n <= k:
        return 0.0
    mean = float(y.mean())
    ss_total = float(((y - mean) ** 2).sum())
    if ss_total <= 0:
        return 0.0
    counts = np.bincount(index, minlength=k).astype(float)
    sums = np.bincount(index, weights=y, minlength=k)
    ss_between = float((sums**2 / counts).sum() - n * mean**2)
    ms_within = max(ss_total - ss_between, 0.0) / (n - k)
    score = (ss_between - (k - 1) * ms_within) / (ss_total + ms_within)
    return min(max(score, 0.0), 1.0)


def _coordinates(space: Space, values: Mapping[str, ParamValue]) -> list[float] | None:
    out: list[float] = []
    for name, p in space.items():
        if name not in values:
            return None
        try:
            if isinstance(p, CategoricalParam):
                out.append(float(p.index(values[name])))
            else:
                out.append(p.to_unit(values[name]))
        except (SpaceError, ValueError):
            return None
    return out


def _groups(column: np.ndarray, param: object) -> np.ndarray:
    """Group labels: each level for few distinct values, else equal-count quantile bins."""
    levels = np.unique(column)
    if isinstance(param, CategoricalParam) or len(levels) <= _MAX_LEVELS:
        return column
    # About sqrt(n)/2 bins keeps ~2·sqrt(n) trials per bin: enough to estimate a bin's mean,
    # fine enough to follow a smooth effect. Ties share a bin because ranks come from values.
    k = int(min(MAX_BINS, max(2, round(math.sqrt(len(column)) / 2))))
    edges = np.quantile(column, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, column, side="right")
