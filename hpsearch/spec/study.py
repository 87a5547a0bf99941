"""The whole spec, :class:`StudySpec`, and :func:`parse_spec`: the one way a spec is validated."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator

from hpsearch import tasks
from hpsearch.objective import Constraint, Objective
from hpsearch.space import Space, SpaceError
from hpsearch.spec.base import NAME, Strict
from hpsearch.spec.catalogue import Parts, catalogue_errors
from hpsearch.spec.errors import FieldError, SpecError, field_errors
from hpsearch.spec.objective import ConstraintSpec, ObjectiveSpec
from hpsearch.spec.pruners import (
    NoPrunerSpec,
    NoSchedulerSpec,
    PrunerSpec,
    SchedulerSpec,
    pruner_errors,
    scheduler_errors,
)
from hpsearch.spec.samplers import (
    GridSamplerSpec,
    RandomSamplerSpec,
    SamplerSpec,
    shuffled_grid_errors,
)
from hpsearch.spec.space import ParamSpec
from hpsearch.spec.task import BudgetSpec, RequiresSpec, TaskSpec


class StudySpec(Strict):
    name: str = Field(pattern=NAME.pattern)
    objective: ObjectiveSpec
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=50)
    space: dict[str, ParamSpec] = Field(min_length=1, max_length=200)
    sampler: SamplerSpec = Field(default_factory=lambda: RandomSamplerSpec(kind="random"))
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    pruner: PrunerSpec = Field(default_factory=lambda: NoPrunerSpec(kind="none"))
    scheduler: SchedulerSpec = Field(default_factory=lambda: NoSchedulerSpec(kind="none"))
    task: TaskSpec
    requires: RequiresSpec = Field(default_factory=RequiresSpec)
    reference_error: float | None = Field(default=None, ge=0, le=1)
    description: str = Field(default="", max_length=10_000)
    # Evaluate the best feasible trial on the test set once the study completes (otherwise
    # only on request: POST /studies/{id}/evaluate-test).
    evaluate_test: bool = False

    @field_validator("space")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not NAME.match(name):
                raise ValueError(f"parameter name {name!r} must match {NAME.pattern}")
        return v

    def build_space(self) -> Space:
        return Space([p.build(name) for name, p in self.space.items()])

    def build_objective(self) -> Objective:
        return Objective(
            self.objective.metric,
            self.objective.direction,
            tuple(Constraint(c.metric, c.op, c.threshold) for c in self.constraints),
        )


def parse_spec(data: Any) -> StudySpec:
    """Validates a decoded spec (a dict); raises :class:`SpecError` naming every bad field.

    This is the one way a spec is validated, by the CLI and the REST API alike.
    """
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        # Every error at once: the parts that did validate are still checked against the
        # trainer, so a user fixes one round of errors, not one round per layer of checks.
        raise SpecError(
            field_errors(e, StudySpec) + catalogue_errors(Parts.of_data(data))
        ) from None
    errors = _cross_field_errors(spec)
    if errors:
        raise SpecError(errors)
    return spec


def _cross_field_errors(spec: StudySpec) -> list[FieldError]:
    """Checks that need the whole spec: bounds against scales, names against the trainer."""
    errors: list[FieldError] = []
    for name, p in spec.space.items():
        try:
            p.build(name)
        except SpaceError as e:
            errors.append(FieldError(("space", name), str(e).removeprefix(f"{name}: ")))
    constraints = list(enumerate(spec.constraints))
    parts = Parts(spec.task, dict(spec.space), spec.objective, constraints, spec.pruner)
    errors.extend(catalogue_errors(parts))
    errors.extend(_test_set_errors(spec))
    errors.extend(pruner_errors(spec.pruner, spec.objective.metric))
    errors.extend(scheduler_errors(spec.scheduler, spec.pruner, spec.budget, spec.task))
    overlap = sorted(set(spec.space) & set(spec.task.fixed))
    for name in overlap:
        errors.append(FieldError(("task", "fixed", name), "is also searched in space"))
    if isinstance(spec.sampler, GridSamplerSpec):
        for name in spec.sampler.values:
            if name not in spec.space:
                errors.append(FieldError(("sampler", "values", name), "not in the space"))
        if spec.sampler.shuffle and not errors:
            errors.extend(shuffled_grid_errors(spec.sampler, spec.build_space()))
    elif spec.sampler.pack > 1 and spec.task.trainer in tasks.USER_CODE:
        errors.append(FieldError(("sampler", "pack"), "packing needs a built-in trainer"))
    return errors


def _test_set_errors(spec: StudySpec) -> list[FieldError]:
    """Selection runs on dev: a test_* metric may be reported, never optimized or constrained
    (the test set is touched once, for the chosen trial, so its figure stays unbiased)."""
    named = [(("objective", "metric"), spec.objective.metric)] + [
        (("constraints", i, "metric"), c.metric) for i, c in enumerate(spec.constraints)
    ]
    if not isinstance(spec.pruner, NoPrunerSpec) and spec.pruner.metric is not None:
        named.append((("pruner", "metric"), spec.pruner.metric))
    return [
        FieldError(loc, f"{metric!r} is a test-set metric; select on dev metrics (dev_*)")
        for loc, metric in named
        if metric.startswith("test_")
    ]
