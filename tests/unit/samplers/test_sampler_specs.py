"""The sampler part of the study spec: keys, defaults and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from hpsearch.spec import CoarseToFineSamplerSpec, SpecError, load_spec_text, parse_spec
from tests.conftest import digits_spec


def errors_of(sampler: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(digits_spec(sampler=sampler))
    return {e.field: e.message for e in info.value.errors}


def test_the_issues_example_parses_with_documented_defaults() -> None:
    spec = parse_spec(
        digits_spec(
            sampler={
                "kind": "coarse_to_fine",
                "rounds": 3,
                "trials_per_round": 20,
                "top_k": 5,
                "margin": 0.1,
                "seed": 0,
            }
        )
    )
    assert spec.sampler == CoarseToFineSamplerSpec(
        kind="coarse_to_fine", rounds=3, trials_per_round=20, top_k=5, margin=0.1, seed=0
    )
    defaults = parse_spec(digits_spec(sampler={"kind": "coarse_to_fine"})).sampler
    # top_k adapts by default (None): see hpsearch.samplers.coarse_to_fine.
    assert defaults == spec.sampler.model_copy(update={"seed": None, "top_k": None})


@pytest.mark.parametrize("kind", ["tpe", "qmc", "cmaes", "gp"])
def test_every_optuna_kind_parses_with_defaults(kind: str) -> None:
    assert parse_spec(digits_spec(sampler={"kind": kind})).sampler.kind == kind


@pytest.mark.parametrize(
    ("sampler", "field", "reason"),
    [
        (
            {"kind": "coarse_to_fine", "trials_per_round": 4, "top_k": 5},
            "sampler.top_k",
            "<= trials_per_round (4)",
        ),
        ({"kind": "coarse_to_fine", "rounds": 0}, "sampler.rounds", "greater than or equal"),
        ({"kind": "coarse_to_fine", "margin": -0.1}, "sampler.margin", "greater than or equal"),
        ({"kind": "tpe", "n_startup_trials": -1}, "sampler.n_startup_trials", "greater"),
        ({"kind": "qmc", "qmc_type": "lattice"}, "sampler.qmc_type", "'sobol'"),
        ({"kind": "cmaes", "sigma0": 0}, "sampler.sigma0", "greater than 0"),
        ({"kind": "gp", "colour": "red"}, "sampler.colour", "unknown key"),
    ],
)
def test_bad_sampler_keys_name_the_field(sampler: dict[str, Any], field: str, reason: str) -> None:
    errors = errors_of(sampler)
    assert field in errors, errors
    assert reason in errors[field]


def test_an_unknown_kind_lists_the_known_ones() -> None:
    errors = errors_of({"kind": "bayes"})
    message = " ".join(errors.values())
    for kind in ("coarse_to_fine", "tpe", "qmc", "cmaes", "gp"):
        assert kind in message


def test_errors_in_a_file_carry_the_line() -> None:
    text = """
name: c2f
objective: {metric: dev_accuracy, direction: maximize}
space:
  lr: {type: float, low: 0.0001, high: 1.0, scale: log}
sampler:
  kind: coarse_to_fine
  trials_per_round: 3
  top_k: 9
task: {trainer: mlp_classifier}
"""
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    [error] = info.value.errors
    assert (error.field, error.line) == ("sampler.top_k", 9)
