"""A spec's checks against its trainer's catalogue: hyperparameters, their values, metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hpsearch import commands, tasks
from hpsearch.spec.errors import FieldError
from hpsearch.spec.objective import ConstraintSpec, ObjectiveSpec
from hpsearch.spec.pruners import NoPrunerSpec, PrunerSpec
from hpsearch.spec.space import CategoricalParamSpec, FloatParamSpec, IntParamSpec, ParamSpec
from hpsearch.spec.task import TaskSpec

_PARAM: TypeAdapter[Any] = TypeAdapter(ParamSpec)
_PRUNER: TypeAdapter[Any] = TypeAdapter(PrunerSpec)


@dataclass(frozen=True)
class Parts:
    """The sections of a spec that the trainer's catalogue checks, each one that validated
    on its own (a spec with errors elsewhere is still checked here)."""

    task: TaskSpec | None
    space: dict[str, Any]
    objective: ObjectiveSpec | None
    constraints: list[tuple[int, ConstraintSpec]]
    pruner: Any

    @classmethod
    def of_data(cls, data: Mapping[str, Any]) -> Parts:
        space = data.get("space")
        constraints = data.get("constraints")
        return cls(
            task=_valid_or_none(TaskSpec.model_validate, data.get("task")),
            space={
                name: p
                for name, raw in (space.items() if isinstance(space, dict) else [])
                if (p := _valid_or_none(_PARAM.validate_python, raw)) is not None
            },
            objective=_valid_or_none(ObjectiveSpec.model_validate, data.get("objective")),
            constraints=[
                (i, c)
                for i, raw in enumerate(constraints if isinstance(constraints, list) else [])
                if (c := _valid_or_none(ConstraintSpec.model_validate, raw)) is not None
            ],
            pruner=_valid_or_none(_PRUNER.validate_python, data.get("pruner", {"kind": "none"})),
        )


def _valid_or_none(validate: Any, raw: Any) -> Any:
    try:
        return validate(raw)
    except ValidationError:
        return None


def catalogue_errors(parts: Parts) -> list[FieldError]:
    """What the trainer knows: its hyperparameters' names and values, and its metrics."""
    if parts.task is None:
        return []
    return _trainer_errors(parts) + _metric_errors(parts)


def _trainer_errors(parts: Parts) -> list[FieldError]:
    """A built-in trainer knows its hyperparameters and their values; a custom one needs its
    entry point, a command one its command."""
    task = parts.task
    assert task is not None
    errors = _user_code_errors(parts)
    if task.trainer in tasks.USER_CODE:
        return errors  # the names are the user's own
    known = tasks.known_hyperparameters(task.trainer)
    named: list[tuple[tuple[str | int, ...], str, Any]] = [
        (("space", n), n, p) for n, p in parts.space.items()
    ]
    named += [(("task", "fixed", n), n, v) for n, v in task.fixed.items()]
    for loc, name, given in named:
        h = tasks.hyperparameter(task.trainer, name)
        if h is None:
            hint = tasks.did_you_mean(name, known)
            errors.append(
                FieldError(
                    loc,
                    f"trainer {task.trainer} has no hyperparameter {name!r}{hint}; known: {known}",
                )
            )
        else:
            errors.extend(_value_errors(loc, h, given))
    return errors


def _value_errors(
    loc: tuple[str | int, ...], h: tasks.Hyperparameter, given: Any
) -> list[FieldError]:
    """Each value a searched or fixed hyperparameter can take, against what its trainer
    accepts: a categorical's choices, a range's bounds, a fixed value."""
    if isinstance(given, CategoricalParamSpec):
        values: list[tuple[tuple[str | int, ...], Any]] = [
            ((*loc, "choices", i), c) for i, c in enumerate(given.choices)
        ]
    elif isinstance(given, FloatParamSpec | IntParamSpec):
        if h.kind in ("str", "bool"):
            kind = "a choice" if h.kind == "str" else "a flag"
            return [FieldError((*loc, "type"), f"{h.name} is {kind}: use type categorical")]
        if h.kind == "int" and isinstance(given, FloatParamSpec):
            return [FieldError((*loc, "type"), f"{h.name} is an integer: use type int")]
        values = [((*loc, "low"), given.low), ((*loc, "high"), given.high)]
    else:
        values = [(loc, given)]
    errors = []
    for where, value in values:
        problem = tasks.value_problem(h, value)
        if problem is not None:
            errors.append(FieldError(where, f"{h.name} {problem}"))
    return errors


def _metric_errors(parts: Parts) -> list[FieldError]:
    """The objective, constraints and pruner name metrics the trainer reports (a built-in
    one's catalogue, or a custom one's ``task.metrics``); a typo is caught here, not after a
    whole budget of trials that could never count."""
    assert parts.task is not None
    reported = tasks.reported_metrics(parts.task.model_dump())
    if reported is None:
        return []
    named: list[tuple[tuple[str | int, ...], str, tuple[str, ...]]] = []
    if parts.objective is not None:
        named.append((("objective", "metric"), parts.objective.metric, reported))
    named += [(("constraints", i, "metric"), c.metric, reported) for i, c in parts.constraints]
    pruner = parts.pruner
    if pruner is not None and not isinstance(pruner, NoPrunerSpec) and pruner.metric is not None:
        per_step = reported if parts.task.metrics is not None else reported + tasks.STEP_METRICS
        named.append((("pruner", "metric"), pruner.metric, per_step))
    declared = parts.task.metrics is not None
    source = "task.metrics" if declared else f"trainer {parts.task.trainer}"
    listed = "" if declared else " (`hpsearch trainers` lists them)"
    return [
        FieldError(
            loc,
            f"{metric!r} is not reported by {source}{tasks.did_you_mean(metric, known)}; "
            f"it reports: {', '.join(known)}{listed}",
        )
        for loc, metric, known in named
        if metric not in known and not metric.startswith("test_")  # see _test_set_errors
    ]


def _user_code_errors(parts: Parts) -> list[FieldError]:
    """``entry_point`` belongs to trainer custom; ``command`` (and its placeholders, each a
    parameter or one the worker fills) and ``workdir`` to trainer command."""
    task, errors = parts.task, []
    assert task is not None
    if task.trainer == tasks.CUSTOM and task.entry_point is None:
        errors.append(FieldError(("task", "entry_point"), "trainer custom needs 'module:function'"))
    if task.trainer != tasks.CUSTOM and task.entry_point is not None:
        errors.append(
            FieldError(("task", "entry_point"), "only trainer custom runs an entry_point")
        )
    if task.trainer == tasks.COMMAND and task.command is None:
        errors.append(
            FieldError(
                ("task", "command"), 'trainer command needs an argv, e.g. ["python", "train.py"]'
            )
        )
    if task.trainer != tasks.COMMAND:
        for key in ("command", "workdir"):
            if getattr(task, key) is not None:
                errors.append(FieldError(("task", key), "only trainer command takes a " + key))
        return errors
    known = {*parts.space, *task.fixed, *commands.BUILTIN_PLACEHOLDERS}
    for i, item in enumerate(task.command or ()):
        for name in commands.PLACEHOLDER.findall(item):
            if name not in known:
                errors.append(
                    FieldError(
                        ("task", "command", i),
                        f"placeholder {{{name}}} is not a parameter of the space, a fixed value "
                        f"or one of {{{'}, {'.join(commands.BUILTIN_PLACEHOLDERS)}}}",
                    )
                )
    return errors
