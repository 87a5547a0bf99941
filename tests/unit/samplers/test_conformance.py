"""Every sampler through the same conformance suite (as Optuna's tests do for its own).

Bounds, scales, categorical choices, reproducibility under a seed, and behaviour with no
finished trial, with every trial infeasible, and with failed and pruned trials.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from hpsearch.objective import Objective
from hpsearch.samplers import FinishedTrial
from hpsearch.space import FloatParam, ParamValue, Space
from tests.unit.samplers.conftest import (
    KINDS,
    OBJECTIVE,
    build,
    failed_outcome,
    infeasible_outcome,
    mixed_outcome,
    run,
    spaces,
    unit_of,
)

# A GP refits per proposal (~1 s here): fewer examples and shorter studies keep the suite
# within its time budget, while every study still reaches the model-based phase.
EXAMPLES = {"gp": 2, "cmaes": 8, "tpe": 8}


def length(kind: str, default: int) -> int:
    return 6 if kind == "gp" else default


def examples(kind: str) -> settings:
    return settings(
        max_examples=EXAMPLES.get(kind, 25),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@pytest.mark.parametrize("kind", KINDS)
def test_proposals_stay_inside_the_space(kind: str) -> None:
    @examples(kind)
    @given(space=spaces(), seed=st.integers(0, 2**31 - 1))
    def check(space: Space, seed: int) -> None:
        for params in run(build(kind, space, OBJECTIVE, seed), space, length(kind, 12)):
            # Bounds, integer-ness, steps and categorical choices, as the space defines them.
            assert space.validate(params) == params

    check()


@pytest.mark.parametrize("kind", KINDS)
def test_a_seed_reproduces_the_proposals(kind: str) -> None:
    @examples(kind)
    @given(space=spaces(), seed=st.integers(0, 2**31 - 1))
    def check(space: Space, seed: int) -> None:
        first = run(build(kind, space, OBJECTIVE, seed), space, length(kind, 10))
        again = run(build(kind, space, OBJECTIVE, seed), space, length(kind, 10))
        assert first == again

    check()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "grid"])
def test_different_seeds_give_different_proposals(kind: str) -> None:
    space = Space([FloatParam("lr", 1e-4, 1.0, "log"), FloatParam("x", -1.0, 1.0)])
    assert run(build(kind, space, OBJECTIVE, 1), space, 6) != run(
        build(kind, space, OBJECTIVE, 2), space, 6
    )


SCALED = Space(
    [
        FloatParam("lr", 1e-5, 1.0, "log"),
        FloatParam("beta", 0.9, 0.9999, "reverse_log"),
        FloatParam("dropout", 0.0, 0.5),
    ]
)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "grid"])
def test_with_nothing_finished_values_are_uniform_on_each_parameters_scale(kind: str) -> None:
    """lr = 10**r with r ~ U[-5, 0]; beta = 1 - 10**r; a linear-in-value lr would fail this."""
    sampler = build(kind, SCALED, OBJECTIVE, seed=3)
    proposals = [sampler.propose(n, [], []) for n in range(200)]
    assert all(p is not None for p in proposals)
    for name in SCALED:
        units = unit_of(SCALED, proposals, name)  # type: ignore[arg-type]
        assert stats.kstest(units, "uniform").pvalue > 1e-3, (kind, name)
    lr = sorted(float(p["lr"]) for p in proposals)  # type: ignore[index]
    # A fifth of a log-uniform lr on [1e-5, 1] lies below 1e-4.
    assert 0.1 < sum(v < 1e-4 for v in lr) / len(lr) < 0.3


def test_grid_points_are_evenly_spaced_on_each_parameters_scale() -> None:
    sampler = build("grid", SCALED, OBJECTIVE)
    proposals = run(sampler, SCALED, 100)
    assert len(proposals) == 27  # 3 ** 3, then the grid is exhausted
    for name in SCALED:
        assert sorted(set(unit_of(SCALED, proposals, name))) == pytest.approx([0, 0.5, 1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "outcome", [infeasible_outcome, failed_outcome, mixed_outcome], ids=lambda f: f.__name__
)
def test_any_history_still_yields_proposals_inside_the_space(kind: str, outcome: object) -> None:
    """Every trial infeasible, every trial failed, or a mix with pruned ones: no crash."""
    space = Space(
        [
            FloatParam("lr", 1e-4, 1.0, "log"),
            FloatParam("beta", 0.9, 0.999, "reverse_log"),
        ]
    )
    n = length(kind, 14)
    proposals = run(build(kind, space, OBJECTIVE), space, n, outcome)  # type: ignore[arg-type]
    assert len(proposals) == (9 if kind == "grid" else n)
    for params in proposals:
        assert space.validate(params) == params


@pytest.mark.parametrize("kind", KINDS)
def test_an_unconstrained_minimizing_objective_works(kind: str) -> None:
    space = Space([FloatParam("x", -2.0, 2.0), FloatParam("lr", 1e-4, 1.0, "log")])
    objective = Objective("loss", "minimize")
    sampler = build(kind, space, objective)
    history: list[FinishedTrial] = []
    for n in range(9):
        params = sampler.propose(n, history, [])
        assert params is not None and space.validate(params) == params
        loss = float(params["x"]) ** 2
        history.append(FinishedTrial(n, params, "completed", loss, True, 0.0))


def _proposal_sequence(kind: str, order: list[int]) -> dict[int, dict[str, ParamValue]]:
    space = Space([FloatParam("lr", 1e-4, 1.0, "log")])
    sampler = build(kind, space, OBJECTIVE, seed=5)
    return {n: sampler.propose(n, [], []) for n in order}  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["random", "coarse_to_fine", "qmc", "grid"])
def test_history_free_proposals_depend_on_the_trial_number_not_the_order(kind: str) -> None:
    """Seeded by (seed, number): workers claiming in another order get the same trials."""
    assert _proposal_sequence(kind, [0, 1, 2, 3, 4]) == _proposal_sequence(kind, [3, 0, 4, 2, 1])


ParamsList = list[dict[str, ParamValue]]
