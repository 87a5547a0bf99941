"""Parameter importance (omega squared per parameter, on each parameter's own scale)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpsearch.importance import MIN_TRIALS, importance, omega_squared
from hpsearch.space import CategoricalParam, FloatParam, IntParam, Space

SPACE = Space(
    [
        FloatParam("lr", 1e-4, 1.0, "log"),
        FloatParam("beta", 0.9, 0.999, "reverse_log"),
        IntParam("layers", 1, 3),
        CategoricalParam("batch_size", (32, 64, 128)),
    ]
)


def _trials(n: int, seed: int) -> tuple[list[dict[str, object]], np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.random((n, 2))
    params = [
        {
            "lr": SPACE["lr"].from_unit(a),
            "beta": SPACE["beta"].from_unit(b),
            "layers": int(rng.integers(1, 4)),
            "batch_size": [32, 64, 128][int(rng.integers(0, 3))],
        }
        for a, b in u
    ]
    return params, u


def test_the_one_parameter_that_matters_takes_the_variance() -> None:
    params, u = _trials(600, seed=0)
    rng = np.random.default_rng(1)
    # Accuracy peaks at lr = 1e-2 (u = 0.5 on the log scale); nothing else matters.
    y = 0.95 - 0.4 * (u[:, 0] - 0.5) ** 2 + rng.normal(0, 0.005, len(u))
    result = importance(SPACE, params, list(y))
    assert result is not None and result.n_trials == 600
    assert result.scores["lr"] > 0.8
    for name in ("beta", "layers", "batch_size"):
        assert result.scores[name] < 0.03, (name, result.scores)
    assert result.ranked()[0][0] == "lr"
    assert math.isclose(sum(result.shares.values()), 1.0)


def test_scores_estimate_each_parameters_share_of_the_variance() -> None:
    # y = f(lr) + g(beta) + noise with Var f = 4 Var g: true shares 0.8·s and 0.2·s where s
    # is the signal fraction; omega squared should land within a few points of each.
    params, u = _trials(3000, seed=2)
    rng = np.random.default_rng(3)
    f = 2.0 * (u[:, 0] - 0.5)  # Var = 4/12
    g = 1.0 * (u[:, 1] - 0.5)  # Var = 1/12
    noise = rng.normal(0, math.sqrt(0.5 / 12), len(u))  # Var = 0.5/12
    result = importance(SPACE, params, list(f + g + noise))
    assert result is not None
    total = 5.5 / 12
    # Binning a linear effect into 10 quantile bins keeps ~99 % of its variance.
    assert result.scores["lr"] == pytest.approx((4 / 12) / total, abs=0.04)
    assert result.scores["beta"] == pytest.approx((1 / 12) / total, abs=0.04)
    assert result.scores["layers"] < 0.01 and result.scores["batch_size"] < 0.01


def test_a_categorical_effect_is_found() -> None:
    params, _ = _trials(300, seed=4)
    rng = np.random.default_rng(5)
    y = [{32: 0.9, 64: 0.8, 128: 0.7}[p["batch_size"]] + rng.normal(0, 0.01) for p in params]  # type: ignore[index]
    result = importance(SPACE, params, y)
    assert result is not None
    assert result.ranked()[0][0] == "batch_size" and result.scores["batch_size"] > 0.9


def test_too_few_trials_give_none_and_non_finite_values_are_left_out() -> None:
    params, u = _trials(MIN_TRIALS, seed=6)
    values = list(u[:, 0])
    assert importance(SPACE, params, values) is not None
    values[0] = math.nan
    assert importance(SPACE, params, values) is None  # 7 finite values left
    outside = [*params[:-1], {**params[-1], "lr": 5.0}]  # outside the space: left out
    assert importance(SPACE, outside, list(u[:, 0])) is None


def test_a_constant_objective_has_no_important_parameter() -> None:
    params, _ = _trials(50, seed=7)
    result = importance(SPACE, params, [0.5] * 50)
    assert result is not None
    assert set(result.scores.values()) == {0.0}
    assert set(result.shares.values()) == {0.0}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=60),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
)
def test_omega_squared_is_a_share(groups: list[int], ys: list[float]) -> None:
    n = min(len(groups), len(ys))
    score = omega_squared(np.array(groups[:n]), np.array(ys[:n]))
    assert 0.0 <= score <= 1.0


def test_ranking_agrees_with_optunas_fanova() -> None:
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import create_trial

    params, u = _trials(200, seed=8)
    # Var of the lr term is 36·(1/80 − 1/144) ≈ 0.2; of the beta term 1/12 ≈ 0.08.
    y = 6.0 * (u[:, 0] - 0.5) ** 2 + 1.0 * u[:, 1]
    ours = importance(SPACE, params, list(y))
    assert ours is not None
    distributions = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "beta": FloatDistribution(0.9, 0.999),
    }
    study = optuna.create_study()
    for p, v in zip(params, y, strict=True):
        study.add_trial(
            create_trial(
                params={"lr": p["lr"], "beta": p["beta"]},
                distributions=distributions,
                value=float(v),
            )
        )
    theirs = optuna.importance.get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=0)
    )
    ranked = [name for name, _ in ours.ranked() if name in distributions]
    assert ranked == list(theirs)
