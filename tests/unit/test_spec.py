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
        (lambda s: s.update(colour="red"), "colour", "Extra inputs are not permitted"),
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
