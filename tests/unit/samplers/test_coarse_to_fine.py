"""Coarse to fine: rounds that zoom in, in each parameter's own scale, by the ranking rule."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpsearch.objective import Objective
from hpsearch.samplers import CoarseToFine, FinishedTrial, make_sampler
from hpsearch.samplers.coarse_to_fine import (
    Rounds,
    adaptive_top_k,
    full_region,
    regions,
    shrink_interval,
    study_regions,
    study_rounds,
)
from hpsearch.space import CategoricalParam, FloatParam, Interval, IntParam, ParamValue, Space
from hpsearch.spec import parse_spec
from tests.conftest import digits_spec

SPACE = Space(
    [
        FloatParam("lr", 1e-5, 1.0, "log"),
        FloatParam("beta", 0.9, 0.9999, "reverse_log"),
        FloatParam("x", -5.0, 5.0),
        IntParam("units", 8, 512, "log"),
    ]
)
OPTIMUM: dict[str, ParamValue] = {"lr": 1e-3, "beta": 0.99, "x": 1.0, "units": 64}
MINIMIZE = Objective("loss", "minimize")


def loss(params: dict[str, ParamValue]) -> float:
    """Squared distance to the optimum in unit space: the optimum is known exactly."""
    u, o = SPACE.to_unit(params), SPACE.to_unit(OPTIMUM)
    return sum((u[k] - o[k]) ** 2 for k in u)


def span(interval: Interval | None) -> tuple[float, float]:
    assert interval is not None
    return interval.lo, interval.hi


def study(config: Rounds, seed: int, extra: int = 0) -> list[FinishedTrial]:
    sampler = CoarseToFine(SPACE, MINIMIZE, config, seed=seed)
    history: list[FinishedTrial] = []
    for n in range(config.rounds * config.trials_per_round + extra):
        params = sampler.propose(n, history, [])
        history.append(FinishedTrial(n, params, "completed", loss(params), True, 0.0))
    return history


@pytest.mark.parametrize("seed", range(20))
def test_each_round_contains_the_optimum_and_shrinks(seed: int) -> None:
    config = Rounds(rounds=4, trials_per_round=30, top_k=5, margin=0.25)
    found = regions(SPACE, "minimize", config, study(config, seed))
    optimum = SPACE.to_unit(OPTIMUM)
    assert [r.round for r in found] == [0, 1, 2, 3]
    for region in found:
        for name, u in optimum.items():
            interval = region.params[name].interval
            assert interval is not None and interval.lo <= u <= interval.hi, (region.round, name)
    volumes = [r.volume() for r in found]
    assert all(later < earlier for earlier, later in itertools.pairwise(volumes))


def test_each_round_samples_inside_its_region_and_the_last_region_goes_on() -> None:
    config = Rounds(rounds=3, trials_per_round=20, top_k=4, margin=0.1)
    history = study(config, seed=1, extra=30)
    found = regions(SPACE, "minimize", config, history)
    assert config.round_of(len(history) - 1) == 2  # the last 30 trials are past the rounds
    for t in history:
        region = found[config.round_of(t.number)]
        for name, value in t.params.items():
            param, interval = SPACE[name], region.params[name].interval
            assert interval is not None
            # Values are monotone in u, so u inside [lo, hi] keeps the value between the ends
            # (an integer snaps to a neighbour of u, never past an end's own value).
            assert param.from_unit(interval.lo) <= value <= param.from_unit(interval.hi)  # type: ignore[operator]


def test_shrinking_happens_in_each_parameters_own_scale() -> None:
    """Top trials at lr 1e-4 and 1e-2: the interval is two decades wide plus margins (log)."""
    space = Space(
        [FloatParam("lr", 1e-6, 1.0, "log"), FloatParam("beta", 0.9, 0.9999, "reverse_log")]
    )
    top = [{"lr": 1e-4, "beta": 0.99}, {"lr": 1e-2, "beta": 0.999}]
    history = [FinishedTrial(n, p, "completed", 1.0, True, 0.0) for n, p in enumerate(top)] + [
        FinishedTrial(2, {"lr": 0.5, "beta": 0.9}, "completed", 9.0, True, 0.0)
    ]
    config = Rounds(rounds=2, trials_per_round=3, top_k=2, margin=0.0)
    second = regions(space, "minimize", config, history)[1]
    lr, beta = second.params["lr"].interval, second.params["beta"].interval
    assert lr is not None and beta is not None
    assert space["lr"].from_unit(lr.lo) == pytest.approx(1e-4)
    assert space["lr"].from_unit(lr.hi) == pytest.approx(1e-2)
    assert lr.width == pytest.approx(2 / 6)  # two decades out of six
    # reverse_log: 1 - beta from 1e-2 to 1e-3, one decade of the three between 0.9 and 0.9999.
    assert beta.width == pytest.approx(1 / 3)
    assert space["beta"].from_unit(beta.hi) == pytest.approx(0.999)


def test_the_top_k_follow_the_ranking_rule_feasible_first() -> None:
    """The best scores are infeasible (too slow): the region forms around the feasible ones."""
    space = Space([FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(0, {"x": 0.95}, "completed", 0.99, False, 3.0),
        FinishedTrial(1, {"x": 0.9}, "completed", 0.98, False, 2.0),
        FinishedTrial(2, {"x": 0.2}, "completed", 0.7, True, 0.0),
        FinishedTrial(3, {"x": 0.3}, "completed", 0.6, True, 0.0),
        FinishedTrial(4, {"x": 0.6}, "completed", 0.1, True, 0.0),
        FinishedTrial(5, {"x": 0.5}, "failed"),
        FinishedTrial(6, {"x": 0.55}, "pruned", 0.95, True, 0.0),
    ]
    config = Rounds(rounds=2, trials_per_round=7, top_k=2, margin=0.0)
    second = regions(space, "maximize", config, history)[1]
    assert second.based_on == (2, 3)
    assert span(second.params["x"].interval) == pytest.approx((0.2, 0.3))


def test_with_too_few_feasible_trials_the_least_violating_fill_the_top_k() -> None:
    space = Space([FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(0, {"x": 0.1}, "completed", 0.5, True, 0.0),
        FinishedTrial(1, {"x": 0.9}, "completed", 0.9, False, 5.0),
        FinishedTrial(2, {"x": 0.4}, "completed", 0.1, False, 0.5),
        FinishedTrial(3, {"x": 0.7}, "completed", 0.2, False, math.inf),  # never measured
    ]
    config = Rounds(rounds=2, trials_per_round=4, top_k=3, margin=0.0)
    second = regions(space, "maximize", config, history)[1]
    assert second.based_on == (0, 2, 1)
    assert second.params["x"].interval == Interval(0.1, 0.9)


def test_all_infeasible_zooms_on_the_least_violating() -> None:
    space = Space([FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(n, {"x": n / 10}, "completed", 1.0, False, abs(n / 10 - 0.3) + 0.1)
        for n in range(10)
    ]
    config = Rounds(rounds=2, trials_per_round=10, top_k=3, margin=0.0)
    second = regions(space, "maximize", config, history)[1]
    assert span(second.params["x"].interval) == pytest.approx((0.2, 0.4))


def test_without_a_ranked_trial_a_round_keeps_the_previous_region() -> None:
    history = [FinishedTrial(n, {"x": 0.5}, "failed") for n in range(5)]
    space = Space([FloatParam("x", 0.0, 1.0)])
    found = regions(space, "maximize", Rounds(3, 5, 2, 0.1), history)
    assert [r.params for r in found] == [full_region(space).params] * 3


def test_categoricals_keep_the_choices_seen_among_the_top() -> None:
    space = Space([CategoricalParam("opt", ("sgd", "momentum", "adam")), FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(0, {"opt": "adam", "x": 0.1}, "completed", 0.9, True, 0.0),
        FinishedTrial(1, {"opt": "sgd", "x": 0.2}, "completed", 0.8, True, 0.0),
        FinishedTrial(2, {"opt": "momentum", "x": 0.3}, "completed", 0.1, True, 0.0),
    ]
    config = Rounds(rounds=2, trials_per_round=3, top_k=2, margin=0.1)
    second = regions(space, "maximize", config, history)[1]
    assert second.params["opt"].choices == ("sgd", "adam")  # in the space's order
    sampler = CoarseToFine(space, Objective("acc", "maximize"), config, seed=0)
    seen = {sampler.propose(n, history, [])["opt"] for n in range(3, 60)}
    assert seen == {"sgd", "adam"}


def test_the_sampler_recomputes_a_region_when_a_late_trial_of_an_earlier_round_finishes() -> None:
    """Parallel workers: round 2 starts before round 1 is done; the region follows the results."""
    space = Space([FloatParam("x", 0.0, 1.0)])
    config = Rounds(rounds=2, trials_per_round=4, top_k=1, margin=0.0)
    sampler = CoarseToFine(space, Objective("acc", "maximize"), config, seed=0)
    early = [
        FinishedTrial(n, {"x": x}, "completed", x, True, 0.0) for n, x in enumerate([0.1, 0.2, 0.3])
    ]
    assert sampler.propose(4, early, []) == {"x": pytest.approx(0.3)}
    late = [*early, FinishedTrial(3, {"x": 0.8}, "completed", 0.8, True, 0.0)]
    assert sampler.propose(5, late, []) == {"x": pytest.approx(0.8)}
    assert sampler.region_for(5, late) == regions(space, "maximize", config, late)[1]


@given(
    lo=st.floats(0, 1),
    width=st.floats(0, 1),
    points=st.lists(st.floats(0, 1), min_size=1, max_size=20),
    margin=st.floats(0, 2),
)
def test_a_shrunk_interval_holds_the_top_points_and_stays_in_bounds(
    lo: float, width: float, points: list[float], margin: float
) -> None:
    previous = Interval(lo, min(1.0, lo + width))
    out = shrink_interval(previous, points, margin)
    assert 0.0 <= out.lo <= min(points) and max(points) <= out.hi <= 1.0
    assert out.width <= max(points) - min(points) + 2 * margin * previous.width + 1e-12


def test_regions_of_a_study_cover_the_begun_rounds_only() -> None:
    spec = parse_spec(
        digits_spec(
            sampler={"kind": "coarse_to_fine", "rounds": 3, "trials_per_round": 4, "top_k": 2}
        )
    )
    sampler = make_sampler(spec)
    assert isinstance(sampler, CoarseToFine)
    assert len(study_regions(spec, [], trials_created=0)) == 1
    assert len(study_regions(spec, [], trials_created=5)) == 2
    assert len(study_regions(spec, [], trials_created=50)) == 3
    assert study_regions(parse_spec(digits_spec()), [], trials_created=50) == []


@pytest.mark.parametrize(("dimensions", "k"), [(1, 2), (2, 2), (3, 2), (4, 3), (6, 3), (7, 4)])
def test_the_default_top_k_grows_with_the_dimension(dimensions: int, k: int) -> None:
    assert adaptive_top_k(dimensions, trials_per_round=20) == k
    assert adaptive_top_k(dimensions, trials_per_round=1) == 1


def test_by_default_the_region_spans_the_adaptive_top_k_and_their_ties() -> None:
    """Two dimensions: the best two span the region; a third tied with the second joins them."""
    space = Space([FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)])
    points = [(0.1, 0.1, 1.0), (0.2, 0.3, 2.0), (0.9, 0.9, 5.0), (0.5, 0.5, 9.0)]
    history = [
        FinishedTrial(n, {"x": x, "y": y}, "completed", v, True, 0.0)
        for n, (x, y, v) in enumerate(points)
    ]
    config = Rounds(rounds=2, trials_per_round=4, margin=0.0)
    second = regions(space, "minimize", config, history)[1]
    assert second.based_on == (0, 1)
    assert span(second.params["x"].interval) == pytest.approx((0.1, 0.2))
    tied = [*history[:2], FinishedTrial(2, {"x": 0.9, "y": 0.9}, "completed", 2.0, True, 0.0)]
    assert regions(space, "minimize", config, tied)[1].based_on == (0, 1, 2)


def test_a_flat_round_does_not_zoom() -> None:
    """Every value equal: the ranking cannot tell the trials apart, so all of them span it."""
    space = Space([FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(n, {"x": x}, "completed", 0.5, True, 0.0)
        for n, x in enumerate([0.0, 0.3, 0.6, 1.0])
    ]
    second = regions(space, "maximize", Rounds(2, 4, margin=0.0), history)[1]
    assert span(second.params["x"].interval) == pytest.approx((0.0, 1.0))


def test_the_spec_defaults_to_the_adaptive_top_k() -> None:
    spec = parse_spec(digits_spec(sampler={"kind": "coarse_to_fine"}))
    assert study_rounds(spec) == Rounds(3, 20, None, 0.1)
