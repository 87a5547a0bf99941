"""The Optuna-backed samplers (tpe, cmaes, gp): what the adapter promises on top of Optuna."""

from __future__ import annotations

import subprocess
import sys

import pytest
from optuna.trial import TrialState

from hpsearch.objective import Objective
from hpsearch.samplers import FinishedTrial, make_sampler
from hpsearch.samplers.optuna_adapter import OptunaSampler, params_key
from hpsearch.space import CategoricalParam, FloatParam, IntParam, ParamValue, Space
from hpsearch.spec import parse_spec
from tests.conftest import REPO, digits_spec
from tests.unit.samplers.conftest import MODEL_BASED, OBJECTIVE, build

SMALL = Space(
    [
        CategoricalParam("optimizer", ("sgd", "momentum", "adam", "rmsprop")),
        IntParam("layers", 1, 4),
    ]
)  # 16 combinations


def _completed(space: Space, sampler: OptunaSampler, n: int) -> list[FinishedTrial]:
    history: list[FinishedTrial] = []
    for number in range(n):
        params = sampler.propose(number, history, [])
        u = space.to_unit(params)
        value = -sum((x - 0.4) ** 2 for x in u.values())
        history.append(FinishedTrial(number, params, "completed", value, True, 0.0))
    return history


@pytest.mark.parametrize("kind", MODEL_BASED)
def test_parallel_workers_never_get_a_running_trials_params(kind: str) -> None:
    sampler = build(kind, SMALL, OBJECTIVE, seed=0)
    assert isinstance(sampler, OptunaSampler)
    history = _completed(SMALL, sampler, 4)
    workers = 4 if kind == "gp" else 8
    running: list[dict[str, ParamValue]] = []
    for number in range(4, 4 + workers):
        # The workers claim one after the other while nothing finishes.
        params = sampler.propose(number, history, running)
        assert params_key(params) not in {params_key(p) for p in running}
        running.append(params)
    assert len({params_key(p) for p in running}) == workers


@pytest.mark.parametrize("kind", ["tpe", "gp"])
def test_running_trials_reach_optuna_as_running(kind: str) -> None:
    """What TPE's constant liar and GP's batch acquisition read."""
    space = Space([FloatParam("lr", 1e-4, 1.0, "log")])
    sampler = build(kind, space, OBJECTIVE, seed=0)
    assert isinstance(sampler, OptunaSampler)
    history = _completed(space, sampler, 4)
    elsewhere = {"lr": 0.01}  # claimed through another server process
    sampler.propose(4, history, [elsewhere])
    liar = space["lr"].to_unit(0.01)  # 0.5: Optuna sees lr on its log scale
    running = sampler.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    # The other process's trial, and the one just proposed here.
    assert len(running) == 2
    assert [t.params["lr"] for t in running].count(pytest.approx(liar)) == 1
    # Once it no longer runs, it leaves (its result arrives through the history).
    sampler.propose(5, history, [])
    still = sampler.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert len(still) == 2  # the two proposals made here, neither finished
    assert liar not in [pytest.approx(t.params["lr"]) for t in still]


def test_history_is_fed_incrementally() -> None:
    """A claim adds only what finished since the last one, never reloads the study."""
    space = Space([FloatParam("x", 0.0, 1.0)])
    sampler = build("tpe", space, OBJECTIVE, seed=0)
    assert isinstance(sampler, OptunaSampler)
    history = [
        FinishedTrial(n, {"x": n / 500}, "completed", float(n % 17), True, 0.0) for n in range(500)
    ]
    proposed = sampler.propose(500, history, [])
    assert len(sampler.study.get_trials(deepcopy=False)) == 501
    for number in range(501, 505):
        sampler.propose(number, history, [])
    assert len(sampler.study.get_trials(deepcopy=False)) == 505  # one per proposal
    # Trial 500 finishes: its own proposal is told, nothing is added.
    done = FinishedTrial(500, proposed, "completed", 3.0, True, 0.0)
    sampler.propose(505, [*history, done], [])
    trials = sampler.study.get_trials(deepcopy=False)
    assert len(trials) == 506
    assert trials[500].state == TrialState.COMPLETE and trials[500].value == 3.0


def test_a_rolled_back_proposal_is_dropped_when_its_number_comes_again() -> None:
    space = Space([FloatParam("x", 0.0, 1.0)])
    sampler = build("tpe", space, OBJECTIVE, seed=0)
    assert isinstance(sampler, OptunaSampler)
    first = sampler.propose(0, [], [])
    again = sampler.propose(0, [], [])
    trials = sampler.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING]
    assert first is not None and again is not None


def test_constraints_reach_the_samplers_that_read_them() -> None:
    space = Space([FloatParam("x", 0.0, 1.0)])
    history = [
        FinishedTrial(0, {"x": 0.1}, "completed", 5.0, True, 0.0),
        FinishedTrial(1, {"x": 0.9}, "completed", 9.0, False, 0.25),
        FinishedTrial(2, {"x": 0.5}, "pruned", 1.0, True, 0.0, {4: 1.0}),
        FinishedTrial(3, {"x": 0.7}, "failed"),
    ]
    tpe = build("tpe", space, OBJECTIVE)
    assert isinstance(tpe, OptunaSampler)
    tpe.propose(4, history, [])
    trials = tpe.study.get_trials(deepcopy=False)[:4]
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
    ]
    assert [t.constraints for t in trials[:2]] == [{"violation": 0.0}, {"violation": 0.25}]
    assert trials[2].intermediate_values == {4: 1.0}
    # CMA-ES cannot read constraints: the infeasible trial looks as bad as the worst so far.
    cmaes = build("cmaes", space, OBJECTIVE)
    assert isinstance(cmaes, OptunaSampler)
    cmaes.propose(4, history, [])
    values = [t.value for t in cmaes.study.get_trials(deepcopy=False)[:2]]
    assert values == [5.0, 5.0]


def test_parameters_reach_optuna_on_their_own_scale() -> None:
    space = Space(
        [
            FloatParam("lr", 1e-4, 1.0, "log"),
            FloatParam("beta", 0.9, 0.999, "reverse_log"),
            CategoricalParam("act", ("relu", "tanh")),
        ]
    )
    sampler = build("tpe", space, OBJECTIVE)
    assert isinstance(sampler, OptunaSampler)
    history = [FinishedTrial(0, {"lr": 0.01, "beta": 0.99, "act": "tanh"}, "completed", 1.0)]
    sampler.propose(1, history, [])
    stored = sampler.study.get_trials(deepcopy=False)[0].params
    assert stored == pytest.approx({"lr": 0.5, "beta": 0.5, "act": 1})


@pytest.mark.parametrize("kind", MODEL_BASED)
def test_a_model_based_sampler_beats_random_on_a_smooth_function(kind: str) -> None:
    """Same budget and seed: its last proposals lie nearer the optimum than random's."""
    space = Space([FloatParam("lr", 1e-5, 1.0, "log"), FloatParam("x", -5.0, 5.0)])
    objective = Objective("loss", "minimize")
    optimum = {"lr": 0.8, "x": 0.3}  # in unit space

    def distance(params: dict[str, ParamValue]) -> float:
        u = space.to_unit(params)
        return float(sum((u[k] - optimum[k]) ** 2 for k in u))

    def last_distances(which: str) -> float:  # the mean over the last 10 trials
        sampler = build(which, space, objective, seed=0)
        history: list[FinishedTrial] = []
        for n in range(25 if kind == "gp" else 40):
            params = sampler.propose(n, history, [])
            assert params is not None
            history.append(FinishedTrial(n, params, "completed", distance(params), True, 0.0))
        return sum(distance(t.params) for t in history[-10:]) / 10

    assert last_distances(kind) < last_distances("random") / 2


@pytest.mark.parametrize("kind", ["random", "grid", "coarse_to_fine", "qmc", "tpe", "cmaes", "gp"])
def test_make_sampler_builds_every_kind_from_a_spec(kind: str) -> None:
    spec = parse_spec(digits_spec(sampler={"kind": kind, "seed": 0}))
    sampler = make_sampler(spec)
    params = sampler.propose(0, [], [])
    assert params is not None
    assert spec.build_space().validate(params) == params


def test_the_core_imports_and_refuses_optuna_samplers_without_optuna() -> None:
    """Optuna is a server extra: without it the core works and a tpe study names the field."""
    code = """
import sys
sys.modules["optuna"] = None  # as if not installed
from hpsearch.errors import InvalidInput
from hpsearch.samplers import make_sampler
from hpsearch.spec import parse_spec
from tests.conftest import digits_spec
make_sampler(parse_spec(digits_spec(sampler={"kind": "coarse_to_fine"}))).propose(0, [], [])
try:
    make_sampler(parse_spec(digits_spec(sampler={"kind": "tpe"})))
except InvalidInput as e:
    print(e.field, "|", e.message)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("sampler.kind | sampler tpe needs optuna installed on the server")


def test_a_number_taken_by_another_process_is_learnt_with_its_real_params() -> None:
    """Our claim of trial 0 rolled back and another server process made trial 0 instead."""
    space = Space([FloatParam("x", 0.0, 1.0)])
    sampler = build("tpe", space, OBJECTIVE, seed=0)
    assert isinstance(sampler, OptunaSampler)
    mine = sampler.propose(0, [], [])
    theirs = {"x": 0.123}
    assert mine != theirs
    sampler.propose(1, [FinishedTrial(0, theirs, "completed", 2.0, True, 0.0)], [])
    trials = sampler.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.RUNNING]
    assert trials[1].params == {"x": pytest.approx(0.123)} and trials[1].value == 2.0
