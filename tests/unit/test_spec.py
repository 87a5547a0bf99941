"""Spec validation names the field, the reason and (from a file) the line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpsearch.spec import SpecError, load_spec_file, load_spec_text, parse_spec
from tests.conftest import REPO, digits_spec


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return {e.field: e.message for e in info.value.errors}


def test_contract_example_parses() -> None:
    spec = parse_spec(digits_spec())
    assert spec.build_space()["beta"].scale == "reverse_log"
    assert spec.build_objective().describe() == (
        "maximize dev_accuracy subject to latency_ms ≤ 100"
    )


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "examples").glob("*.yaml")), REPO / "hpsearch" / "examples" / "demo.yaml"],
)
def test_every_example_validates(path: Path) -> None:
    load_spec_file(path)


def _broken(mutate: Any) -> dict[str, Any]:
    spec = copy.deepcopy(digits_spec())
    mutate(spec)
    return spec


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda s: s["space"]["lr"].update(scale="cubic"), "space.lr.scale", "'linear'"),
        (lambda s: s["space"]["lr"].update(low=2.0), "space.lr", "low (2.0) must be <= high"),
        (lambda s: s["space"]["lr"].update(low=0.0), "space.lr", "log scale needs low > 0"),
        (lambda s: s.pop("objective"), "objective", "Field required"),
        (lambda s: s["constraints"][0].update(op="~"), "constraints.0.op", "'<='"),
        (
            lambda s: s["space"].update(momentum={"type": "float", "low": 0, "high": 1}),
            "space.momentum",
            "has no hyperparameter 'momentum'",
        ),
        (lambda s: s["task"].update(trainer="resnet"), "task.trainer", "unknown trainer"),
        (lambda s: s.update(colour="red"), "colour", "unknown key"),
    ],
)
def test_malformed_specs_name_the_field(mutate: Any, field: str, reason: str) -> None:
    errors = errors_of(_broken(mutate))
    assert field in errors, errors
    assert reason in errors[field]


def test_yaml_errors_carry_the_line() -> None:
    text = yaml.safe_dump(digits_spec(), sort_keys=False).replace("scale: log", "scale: cubic", 1)
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    (err,) = info.value.errors
    line = text.splitlines()[err.line - 1] if err.line else ""
    assert err.field == "space.lr.scale" and "cubic" in line


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec_text("- just\n- a list\n")


def test_a_metric_typo_is_refused_with_the_closest_reported_name() -> None:
    errors = errors_of(
        digits_spec(
            objective={"metric": "dev_acc", "direction": "maximize"},
            constraints=[{"metric": "latncy_ms", "op": "<=", "threshold": 100}],
        )
    )
    assert "(did you mean 'dev_accuracy'?)" in errors["objective.metric"]
    assert "(did you mean 'latency_ms'?)" in errors["constraints.0.metric"]
    assert "hpsearch trainers" in errors["objective.metric"]


def test_every_error_comes_at_once() -> None:
    # A key pydantic refuses, and values only the trainer's catalogue knows are wrong: one
    # round of errors, not one per layer of checks.
    spec = digits_spec(objective={"metric": "dev_acc", "direction": "maximize"})
    spec["space"]["activation"] = {"type": "categorical", "choices": ["relu", "gelu"]}
    spec["space"]["dropout"] = {"type": "float", "low": 0.0, "high": 1.5}
    spec["space"]["lr"]["scal"] = "log"
    spec["task"]["fixed"] = {"optimizer": "adamw", "activaton": "relu"}
    errors = errors_of(spec)
    assert "did you mean 'scale'?" in errors["space.lr.scal"]
    assert "'gelu' is not one of" in errors["space.activation.choices.1"]
    assert "must be in [0, 1), got 1.5" in errors["space.dropout.high"]
    assert "(did you mean 'adam'?)" in errors["task.fixed.optimizer"]
    assert "(did you mean 'activation'?)" in errors["task.fixed.activaton"]
    assert "dev_accuracy" in errors["objective.metric"]


@pytest.mark.parametrize(
    ("param", "reason"),
    [
        ({"type": "float", "low": 0.1, "high": 0.5}, "is a choice: use type categorical"),
        ({"type": "categorical", "choices": [0.5]}, "must be one of"),
    ],
)
def test_a_choice_knob_takes_only_its_choices(param: dict[str, Any], reason: str) -> None:
    spec = digits_spec()
    spec["space"]["optimizer"] = param
    assert reason in str(errors_of(spec))


def test_a_custom_trainer_may_declare_its_metrics() -> None:
    task = {"trainer": "custom", "entry_point": "lab.train:fit", "epochs": 2}
    spec = digits_spec(task=task, constraints=[])
    spec["space"] = {"quality": {"type": "float", "low": 0, "high": 1}}
    parse_spec(spec)  # undeclared: the user's code reports what it reports
    spec["task"]["metrics"] = ["dev_accuracy_top1", "latency_ms"]
    assert "did you mean 'dev_accuracy_top1'?" in errors_of(spec)["objective.metric"]


def test_requirements() -> None:
    spec = parse_spec(digits_spec(requires={"device": "cuda", "labels": {"site": "lab2"}}))
    assert spec.requires.device == "cuda" and spec.requires.labels == {"site": "lab2"}
    errors = errors_of(digits_spec(requires={"device": "cpu", "gpus": 1}))
    assert "device cpu has no GPUs" in errors["requires.gpus"]
    assert "unknown key" in errors_of(digits_spec(requires={"gpu": 1}))["requires.gpu"]
