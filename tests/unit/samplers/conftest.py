"""Every sampler, built from a space and an objective, and a synthetic study loop to drive it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from hpsearch.objective import Constraint, Objective
from hpsearch.samplers import (
    CoarseToFine,
    FinishedTrial,
    GridSampler,
    QmcSampler,
    RandomSampler,
    Sampler,
)
from hpsearch.samplers.coarse_to_fine import Rounds
from hpsearch.samplers.optuna_adapter import optuna_sampler
from hpsearch.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    ParamValue,
    Space,
)
from hpsearch.spec import CmaesSamplerSpec, GpSamplerSpec, TpeSamplerSpec

KINDS = ["random", "grid", "coarse_to_fine", "qmc", "tpe", "cmaes", "gp"]
MODEL_BASED = ["tpe", "cmaes", "gp"]


def build(kind: str, space: Space, objective: Objective, seed: int | None = 0) -> Sampler:
    """The sampler of ``kind``, small enough that short loops reach its model-based phase."""
    if kind == "random":
        return RandomSampler(space, objective, seed=seed)
    if kind == "grid":
        values = {name: p.grid(3) for name, p in space.items()}
        return GridSampler(space, objective, values, shuffle=True, seed=seed)
    if kind == "coarse_to_fine":
        return CoarseToFine(space, objective, Rounds(3, 4, 2, 0.1), seed=seed)
    if kind == "qmc":
        return QmcSampler(space, objective, seed=seed)
    if kind == "tpe":
        return optuna_sampler(
            space, objective, TpeSamplerSpec(kind="tpe", n_startup_trials=3, seed=seed)
        )
    if kind == "cmaes":
        return optuna_sampler(
            space, objective, CmaesSamplerSpec(kind="cmaes", n_startup_trials=2, seed=seed)
        )
    if kind == "gp":
        return optuna_sampler(
            space, objective, GpSamplerSpec(kind="gp", n_startup_trials=3, seed=seed)
        )
    raise AssertionError(kind)


# -- outcomes of a synthetic study ----------------------------------------------------------

Outcome = Callable[[int, dict[str, float]], FinishedTrial]
LATENCY = Constraint("latency_ms", "<=", 100.0)
OBJECTIVE = Objective("score", "maximize", (LATENCY,))


def mixed_outcome(number: int, params: dict[str, ParamValue], space: Space) -> FinishedTrial:
    """Completed, failed, pruned, feasible and infeasible trials, a function of the params."""
    units = space.to_unit(params)
    score = -sum((u - 0.3) ** 2 for u in units.values())
    latency = 200.0 * next(iter(units.values()))
    metrics: dict[str, float | None] = {"score": score, "latency_ms": latency}
    evaluation = OBJECTIVE.evaluate(metrics)
    if number % 5 == 4:
        return FinishedTrial(number, params, "failed")
    state = "pruned" if number % 7 == 6 else "completed"
    return FinishedTrial(
        number, params, state, score, evaluation.feasible, evaluation.violation, {3: score}
    )


def infeasible_outcome(number: int, params: dict[str, ParamValue], space: Space) -> FinishedTrial:
    """Every trial misses the constraint, some by less than others."""
    units = space.to_unit(params)
    first = next(iter(units.values()))
    return FinishedTrial(number, params, "completed", first, False, 1.0 + first)


def failed_outcome(number: int, params: dict[str, ParamValue], space: Space) -> FinishedTrial:
    return FinishedTrial(number, params, "failed")


def run(
    sampler: Sampler,
    space: Space,
    n: int,
    outcome: Callable[[int, dict[str, ParamValue], Space], FinishedTrial] = mixed_outcome,
) -> list[dict[str, ParamValue]]:
    """A sequential study of ``n`` trials; returns every proposal (stops when one is None)."""
    history: list[FinishedTrial] = []
    proposals: list[dict[str, ParamValue]] = []
    for number in range(n):
        params = sampler.propose(number, history, [])
        if params is None:
            break
        proposals.append(params)
        history.append(outcome(number, params, space))
    return proposals


# -- spaces ---------------------------------------------------------------------------------


@st.composite
def params(draw: st.DrawFn, name: str) -> Param:
    kind = draw(st.sampled_from(["linear", "log", "reverse_log", "int", "int_log", "cat", "step"]))
    if kind == "linear":
        low = draw(st.floats(-1e3, 1e3))
        return FloatParam(name, low, low + draw(st.floats(1e-3, 1e3)))
    if kind == "log":
        low = 10 ** draw(st.floats(-8, 2))
        return FloatParam(name, low, low * 10 ** draw(st.floats(0.1, 6)), "log")
    if kind == "reverse_log":
        low = draw(st.floats(0.0, 0.9))
        return FloatParam(name, low, 1 - (1 - low) * 10 ** -draw(st.floats(0.1, 4)), "reverse_log")
    if kind == "step":
        low = draw(st.floats(-10, 10))
        step = draw(st.sampled_from([0.1, 0.25, 1.0]))
        return FloatParam(name, low, low + step * draw(st.integers(1, 40)), step=step)
    if kind == "int":
        low = draw(st.integers(-50, 50))
        step = draw(st.integers(1, 4))
        return IntParam(name, low, low + step * draw(st.integers(0, 30)), step=step)
    if kind == "int_log":
        low = draw(st.integers(1, 64))
        return IntParam(name, low, low * draw(st.integers(1, 64)), "log")
    choices = draw(
        st.lists(
            st.one_of(st.text(max_size=4), st.integers(-3, 3), st.booleans()),
            min_size=1,
            max_size=5,
            unique_by=repr,
        )
    )
    return CategoricalParam(name, tuple(choices))


@st.composite
def spaces(draw: st.DrawFn) -> Space:
    n = draw(st.integers(1, 4))
    return Space([draw(params(f"p{i}")) for i in range(n)])


def unit_of(space: Space, proposals: Sequence[dict[str, ParamValue]], name: str) -> list[float]:
    return [space[name].to_unit(p[name]) for p in proposals]
