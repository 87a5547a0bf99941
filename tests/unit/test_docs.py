"""The docs cover what the code accepts: every spec key, every trainer hyperparameter."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from hpsearch import spec, tasks
from tests.conftest import REPO

SPEC_DOC = (REPO / "docs" / "spec.md").read_text()
WORKERS_DOC = (REPO / "docs" / "workers.md").read_text()


@pytest.mark.parametrize("trainer", sorted(tasks.TRAINERS))
def test_worker_guide_lists_every_hyperparameter(trainer: str) -> None:
    # Regenerate with `hpsearch trainers` when the catalogue changes.
    assert tasks.markdown_table(trainer) in WORKERS_DOC


def _models_in(annotation: object) -> list[type[BaseModel]]:
    found = []
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found.extend(_models_in(arg))
    return found


SECTIONS = {
    "StudySpec": spec.StudySpec,
    "BudgetSpec": spec.BudgetSpec,
    "TaskSpec": spec.TaskSpec,
    "SplitSpec": spec.SplitSpec,
    "RequiresSpec": spec.RequiresSpec,
}


@pytest.mark.parametrize("model", list(SECTIONS.values()), ids=list(SECTIONS))
def test_spec_reference_names_every_key(model: type[BaseModel]) -> None:
    for key in model.model_fields:
        assert f"`{key}`" in SPEC_DOC or f"{key}:" in SPEC_DOC, key


@pytest.mark.parametrize("field", ["sampler", "pruner"])
def test_spec_reference_covers_every_kind_and_option(field: str) -> None:
    annotation = spec.StudySpec.model_fields[field].annotation
    for member in _models_in(annotation):
        kind = typing.get_args(member.model_fields["kind"].annotation)[0]
        assert f"`{kind}`" in SPEC_DOC, kind
        for key in member.model_fields:
            assert f"`{key}`" in SPEC_DOC, f"{kind}.{key}"


def test_hpsearch_trainers_lists_what_each_trainer_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hpsearch.cli import main

    assert main(["trainers"]) == 0
    out = capsys.readouterr().out
    for trainer in tasks.TRAINERS:
        assert f"{tasks.markdown_table(trainer)}\n\n{tasks.metrics_line(trainer)}" in out
    assert all(metric in tasks.metrics_line("mlp_classifier") for metric in tasks.METRICS)
