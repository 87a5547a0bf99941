"""hpsearch.samplers.CoarseToFineSampler for plain Optuna users: Optuna's sampler contract."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from scipy import stats

import hpsearch.samplers
from hpsearch.samplers import CoarseToFineSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTRIBUTIONS = {
    "x": FloatDistribution(-3.0, 3.0),
    "lr": FloatDistribution(1e-5, 1.0, log=True),
    "step": FloatDistribution(0.0, 1.0, step=0.1),
    "n": IntDistribution(1, 9),
    "units": IntDistribution(8, 512, log=True),
    "every": IntDistribution(0, 20, step=4),
    "act": CategoricalDistribution(["relu", "tanh", None, 3]),
}


def objective(trial: optuna.Trial) -> float:
    """Suggests every kind of distribution; prunes some trials and fails others."""
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    trial.suggest_float("step", 0.0, 1.0, step=0.1)
    trial.suggest_int("n", 1, 9)
    trial.suggest_int("units", 8, 512, log=True)
    trial.suggest_int("every", 0, 20, step=4)
    trial.suggest_categorical("act", ["relu", "tanh", None, 3])
    if trial.number % 9 == 4:
        raise ValueError("a failed trial")
    if trial.number % 7 == 5:
        trial.report(1.0, 0)
        raise optuna.TrialPruned()
    return (x - 1.0) ** 2 + (math.log10(lr) + 3.0) ** 2


def optimize(sampler: optuna.samplers.BaseSampler, n: int = 60) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n, catch=(ValueError,))
    return study


def test_it_is_importable_from_hpsearch_samplers() -> None:
    assert hpsearch.samplers.CoarseToFineSampler is CoarseToFineSampler
    assert issubclass(CoarseToFineSampler, optuna.samplers.BaseSampler)


def test_values_stay_inside_their_distributions_with_pruned_and_failed_trials() -> None:
    study = optimize(CoarseToFineSampler(trials_per_round=15, seed=0))
    states = {t.state for t in study.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    for trial in study.trials:
        for name, value in trial.params.items():
            d = DISTRIBUTIONS[name]
            assert d._contains(d.to_internal_repr(value)), (name, value)
            if isinstance(d, IntDistribution):
                assert isinstance(value, int)


def test_a_seed_reproduces_the_study() -> None:
    first = optimize(CoarseToFineSampler(trials_per_round=10, seed=7), 40)
    again = optimize(CoarseToFineSampler(trials_per_round=10, seed=7), 40)
    other = optimize(CoarseToFineSampler(trials_per_round=10, seed=8), 40)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert [t.params for t in first.trials] != [t.params for t in other.trials]


def test_log_distributions_are_sampled_on_their_log_scale() -> None:
    """Round 1 is random: log10(lr) must be uniform on [-5, 0], not lr on [1e-5, 1]."""
    study = optuna.create_study(sampler=CoarseToFineSampler(trials_per_round=300, seed=1))
    for _ in range(300):
        trial = study.ask()
        trial.suggest_float("lr", 1e-5, 1.0, log=True)
        study.tell(trial, 0.0)
    logs = [(math.log10(t.params["lr"]) + 5) / 5 for t in study.trials]
    assert stats.kstest(logs, "uniform").pvalue > 1e-3


def test_ask_and_tell_zooms_in_on_the_optimum() -> None:
    sampler = CoarseToFineSampler(rounds=3, trials_per_round=30, top_k=5, margin=0.1, seed=3)
    study = optuna.create_study(sampler=sampler)
    for _ in range(90):
        trial = study.ask()
        x = trial.suggest_float("x", -10.0, 10.0)
        lr = trial.suggest_float("lr", 1e-6, 1.0, log=True)
        study.tell(trial, (x - 2.0) ** 2 + (math.log10(lr) + 2.0) ** 2)
    last = [t.params for t in study.trials[60:]]
    assert all(-2.0 < p["x"] < 6.0 for p in last)
    assert all(1e-4 < p["lr"] < 1.0 for p in last)
    assert study.best_value < 0.05


def test_constraints_func_keeps_infeasible_trials_out_of_the_top() -> None:
    """x near 3 scores best but breaks the constraint x <= 1: round 2 stays below 1."""

    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [trial.params["x"] - 1.0]

    sampler = CoarseToFineSampler(
        rounds=2, trials_per_round=40, top_k=5, margin=0.0, seed=0, constraints_func=constraints
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -3.0, 3.0), n_trials=80)
    # Optuna's convention: the values are stored on the trial for every reader.
    assert study.trials[0].system_attrs["constraints"] == (study.trials[0].params["x"] - 1.0,)
    second = [t.params["x"] for t in study.trials[40:]]
    assert max(second) <= 1.0
    assert min(second) > 0.0


def test_set_constraint_is_honoured_too() -> None:
    sampler = CoarseToFineSampler(rounds=2, trials_per_round=40, top_k=5, margin=0.0, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(80):
        trial = study.ask()
        x = trial.suggest_float("x", -3.0, 3.0)
        trial.set_constraint("x_at_most_1", x - 1.0)
        study.tell(trial, x)
    assert max(t.params["x"] for t in study.trials[40:]) <= 1.0


def test_with_every_trial_infeasible_the_least_violating_span_the_next_round() -> None:
    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [abs(trial.params["x"] - 2.0) + 0.5]  # never <= 0; least violated at x = 2

    sampler = CoarseToFineSampler(
        rounds=2, trials_per_round=40, top_k=4, margin=0.0, seed=0, constraints_func=constraints
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -3.0, 3.0), n_trials=60)
    assert all(1.0 < t.params["x"] < 3.0 for t in study.trials[40:])


def test_multi_objective_studies_are_refused_by_every_hook() -> None:
    sampler = CoarseToFineSampler()
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    with pytest.raises(ValueError, match="multi-objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=1)
    trial = optuna.trial.create_trial(state=TrialState.RUNNING)
    x = FloatDistribution(0.0, 1.0)
    for hook in (
        lambda: sampler.infer_relative_search_space(study, trial),
        lambda: sampler.sample_relative(study, trial, {"x": x}),
        lambda: sampler.sample_independent(study, trial, "x", x),
    ):
        with pytest.raises(ValueError, match="multi-objective"):
            hook()


def test_reseed_rng_keeps_a_seeded_study_reproducible() -> None:
    """reseed_rng is a deliberate no-op: values come from (seed, number, name)."""

    def run(reseed: bool) -> list[float]:
        sampler = CoarseToFineSampler(rounds=2, trials_per_round=5, seed=7)
        study = optuna.create_study(sampler=sampler)
        for _ in range(8):
            if reseed:
                sampler.reseed_rng()
            study.optimize(lambda t: t.suggest_float("x", -3.0, 3.0) ** 2, n_trials=1)
        return [t.params["x"] for t in study.trials]

    assert run(reseed=True) == run(reseed=False)


def test_bad_settings_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="top_k <= trials_per_round"):
        CoarseToFineSampler(trials_per_round=3, top_k=5)
    with pytest.raises(ValueError, match="margin"):
        CoarseToFineSampler(margin=-1.0)
