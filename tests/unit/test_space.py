"""Sampling on the right scale: statistical tests with fixed seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from hpsearch.objective import Objective
from hpsearch.samplers import GridSampler, RandomSampler
from hpsearch.space import CategoricalParam, FloatParam, IntParam, Space, SpaceError
from hpsearch.spec import GridSamplerSpec, grid_values

OBJ = Objective("dev_accuracy", "maximize")
N = 2000


def draws(space: Space, seed: int = 0, n: int = N) -> list[dict[str, object]]:
    sampler = RandomSampler(space, OBJ, seed=seed)
    return [sampler.propose(i, [], []) for i in range(n)]


def test_log_param_is_log_uniform() -> None:
    lr = FloatParam("lr", 1e-4, 1.0, "log")
    values = np.array([d["lr"] for d in draws(Space([lr]))], dtype=float)
    exponents = np.log10(values)
    # r ~ U[-4, 0]: Kolmogorov–Smirnov against that uniform.
    assert stats.kstest(exponents, stats.uniform(loc=-4, scale=4).cdf).pvalue > 0.01
    # ...and clearly not uniform on the raw scale (most raw-uniform draws would be > 0.1).
    assert stats.kstest(values, stats.uniform(loc=1e-4, scale=1 - 1e-4).cdf).pvalue < 1e-6
    assert np.mean(values < 0.1) == pytest.approx(0.75, abs=0.03)


def test_reverse_log_param_makes_one_minus_beta_log_uniform() -> None:
    beta = FloatParam("beta", 0.9, 0.999, "reverse_log")
    values = np.array([d["beta"] for d in draws(Space([beta]))], dtype=float)
    assert values.min() >= 0.9 and values.max() <= 0.999
    exponents = np.log10(1 - values)  # r ~ U[-3, -1]
    assert stats.kstest(exponents, stats.uniform(loc=-3, scale=2).cdf).pvalue > 0.01
    # Half of the draws land in [0.99, 0.999], where the averaging window is 100–1000.
    assert np.mean(values >= 0.99) == pytest.approx(0.5, abs=0.03)


def test_log_int_param_is_log_uniform_and_integral() -> None:
    units = IntParam("hidden_units", 16, 256, "log")
    values = np.array([d["hidden_units"] for d in draws(Space([units]))])
    assert all(isinstance(v, int | np.integer) for v in values)
    assert values.min() >= 16 and values.max() <= 256
    # Each octave (16-32, 32-64, 64-128, 128-256) gets about a quarter of the draws.
    octaves = np.histogram(np.log2(values), bins=[4, 5, 6, 7, 8.01])[0] / N
    assert np.allclose(octaves, 0.25, atol=0.04)


def test_linear_int_and_categorical_stay_in_range_and_cover_it() -> None:
    space = Space([IntParam("layers", 1, 3), CategoricalParam("bs", (32, 64, 128))])
    seen = draws(space)
    layers = [d["layers"] for d in seen]
    assert set(layers) == {1, 2, 3}
    assert stats.chisquare(np.bincount(layers)[1:]).pvalue > 0.01
    assert {d["bs"] for d in seen} == {32, 64, 128}


def test_same_seed_same_trials_whatever_the_order() -> None:
    space = Space([FloatParam("lr", 1e-4, 1.0, "log"), IntParam("layers", 1, 3)])
    a = RandomSampler(space, OBJ, seed=7)
    b = RandomSampler(space, OBJ, seed=7)
    forward = [a.propose(i, [], []) for i in range(20)]
    backward = [b.propose(i, [], []) for i in reversed(range(20))][::-1]
    assert forward == backward
    assert forward != [RandomSampler(space, OBJ, seed=8).propose(i, [], []) for i in range(20)]


def test_grid_enumerates_the_space_once() -> None:
    space = Space(
        [
            FloatParam("lr", 1e-3, 1.0, "log"),
            IntParam("layers", 1, 3),
            CategoricalParam("bs", (32, 64)),
        ]
    )
    cfg = GridSamplerSpec(kind="grid", n=4)
    sampler = GridSampler(space, OBJ, grid_values(cfg, space))
    points = []
    number = 0
    while (p := sampler.propose(number, [], [])) is not None:
        points.append(p)
        number += 1
    assert len(points) == sampler.capacity() == 4 * 3 * 2
    assert len({tuple(p.values()) for p in points}) == len(points)
    # On the log scale the 4 learning rates are 1e-3, 1e-2, 1e-1, 1.
    assert sorted({p["lr"] for p in points}) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])


@pytest.mark.parametrize(
    ("low", "high", "scale", "message"),
    [
        (0.0, 1.0, "log", "log scale needs low > 0"),
        (2.0, 1.0, "linear", "must be <= high"),
        (0.9, 1.0, "reverse_log", "high < 1"),
    ],
)
def test_bad_bounds_are_refused(low: float, high: float, scale: str, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        FloatParam("x", low, high, scale)  # type: ignore[arg-type]


@given(
    low=st.floats(1e-6, 1e3),
    span=st.floats(1.0001, 1e4),
    u=st.floats(0, 1),
    scale=st.sampled_from(["linear", "log"]),
)
def test_unit_interval_round_trip(low: float, span: float, u: float, scale: str) -> None:
    p = FloatParam("x", low, low * span, scale)  # type: ignore[arg-type]
    x = p.from_unit(u)
    assert p.low <= x <= p.high
    assert p.to_unit(x) == pytest.approx(u, abs=1e-6)


@given(u=st.floats(0, 1))
def test_reverse_log_round_trip(u: float) -> None:
    p = FloatParam("beta", 0.9, 0.9999, "reverse_log")
    x = p.from_unit(u)
    assert 0.9 <= x <= 0.9999
    assert p.to_unit(x) == pytest.approx(u, abs=1e-6)
    assert math.isclose(-math.log10(1 - x), 1 + 3 * u, rel_tol=1e-6)
