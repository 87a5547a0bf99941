"""The study spec: the public contract users write in YAML or JSON.

Keys may be added by later versions, never renamed. Validation names the field and the reason;
:func:`load_spec_text` also names the line of the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hpsearch import tasks
from hpsearch.objective import Constraint, ConstraintOp, Direction, Objective
from hpsearch.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    ParamValue,
    Scale,
    Space,
    SpaceError,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")


class SpecError(ValueError):
    """A spec that does not validate; ``errors`` name each field (a path) and the reason."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class FieldError:
    def __init__(self, loc: tuple[str | int, ...], message: str, line: int | None = None):
        self.loc = loc
        self.message = message
        self.line = line

    @property
    def field(self) -> str:
        return field_path(self.loc)

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveSpec(_Strict):
    metric: str = Field(pattern=_NAME.pattern)
    direction: Direction


class ConstraintSpec(_Strict):
    metric: str = Field(pattern=_NAME.pattern)
    op: ConstraintOp
    threshold: float

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number")
        return v


class FloatParamSpec(_Strict):
    type: Literal["float"]
    low: float
    high: float
    scale: Scale = "linear"
    step: float | None = None

    def build(self, name: str) -> Param:
        return FloatParam(name, self.low, self.high, self.scale, self.step)


class IntParamSpec(_Strict):
    type: Literal["int"]
    low: int
    high: int
    scale: Literal["linear", "log"] = "linear"
    step: int = 1

    def build(self, name: str) -> Param:
        return IntParam(name, self.low, self.high, self.scale, self.step)


class CategoricalParamSpec(_Strict):
    type: Literal["categorical"]
    choices: list[bool | int | float | str] = Field(min_length=1, max_length=1000)

    def build(self, name: str) -> Param:
        return CategoricalParam(name, tuple(self.choices))


ParamSpec = Annotated[
    FloatParamSpec | IntParamSpec | CategoricalParamSpec, Field(discriminator="type")
]


class RandomSamplerSpec(_Strict):
    kind: Literal["random"]
    seed: int | None = None


class GridSamplerSpec(_Strict):
    """All combinations: ``values`` per parameter where given, else ``n`` points on its scale."""

    kind: Literal["grid"]
    n: int = Field(default=5, ge=1, le=1000)
    values: dict[str, list[bool | int | float | str]] = Field(default_factory=dict)
    shuffle: bool = False
    seed: int | None = None


SamplerSpec = Annotated[RandomSamplerSpec | GridSamplerSpec, Field(discriminator="kind")]


class BudgetSpec(_Strict):
    max_trials: int = Field(default=20, ge=1, le=10_000_000)
    parallelism: int = Field(default=1, ge=1, le=10_000)
    max_failures: int | None = Field(default=None, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=100)
    time_limit_s: float | None = Field(default=None, gt=0)
    target_value: float | None = None


class SplitSpec(_Strict):
    """Train/dev/test fractions (the rest of 1 is unused); ``train_dev`` is carved from train."""

    train: float = Field(default=0.6, gt=0, lt=1)
    dev: float = Field(default=0.2, gt=0, lt=1)
    test: float = Field(default=0.2, ge=0, lt=1)
    train_dev: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0

    @field_validator("test")
    @classmethod
    def _sums_to_one_or_less(cls, v: float, info: Any) -> float:
        total = v + info.data.get("train", 0) + info.data.get("dev", 0)
        if total > 1 + 1e-9:
            raise ValueError(f"train + dev + test must be <= 1, got {total:g}")
        return v


class TaskSpec(_Strict):
    """What a worker trains: a built-in trainer, its data, and hyperparameters held fixed.

    ``data_path`` is read on the worker (for ``dataset: file``, an .npz/.csv/.pt file; for
    mnist/fashion_mnist/cifar10, the folder holding the original files).
    """

    trainer: str
    dataset: str = "digits"
    data_path: str | None = Field(default=None, max_length=4096)
    split: SplitSpec = Field(default_factory=SplitSpec)
    normalize: bool = True
    epochs: int = Field(default=10, ge=1, le=100_000)
    fixed: dict[str, bool | int | float | str] = Field(default_factory=dict)

    @field_validator("trainer")
    @classmethod
    def _known_trainer(cls, v: str) -> str:
        if v not in tasks.TRAINERS:
            raise ValueError(f"unknown trainer {v!r}; built-in trainers: {sorted(tasks.TRAINERS)}")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in tasks.DATASETS:
            raise ValueError(f"unknown dataset {v!r}; known: {list(tasks.DATASETS)}")
        return v


class StudySpec(_Strict):
    name: str = Field(pattern=_NAME.pattern)
    objective: ObjectiveSpec
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=50)
    space: dict[str, ParamSpec] = Field(min_length=1, max_length=200)
    sampler: SamplerSpec = Field(default_factory=lambda: RandomSamplerSpec(kind="random"))
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    task: TaskSpec
    reference_error: float | None = Field(default=None, ge=0, le=1)
    description: str = Field(default="", max_length=10_000)

    @field_validator("space")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"parameter name {name!r} must match {_NAME.pattern}")
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
        raise SpecError(_field_errors(e)) from None
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
    known = tasks.known_hyperparameters(spec.task.trainer)
    named = [(("space", n), n) for n in spec.space] + [
        (("task", "fixed", n), n) for n in spec.task.fixed
    ]
    for loc, name in named:
        if name not in known:
            errors.append(
                FieldError(
                    loc,
                    f"trainer {spec.task.trainer} has no hyperparameter {name!r}; known: {known}",
                )
            )
    overlap = sorted(set(spec.space) & set(spec.task.fixed))
    for name in overlap:
        errors.append(FieldError(("task", "fixed", name), "is also searched in space"))
    if isinstance(spec.sampler, GridSamplerSpec):
        for name in spec.sampler.values:
            if name not in spec.space:
                errors.append(FieldError(("sampler", "values", name), "not in the space"))
    return errors


def load_spec_text(text: str, source: str = "<spec>") -> StudySpec:
    """Parses YAML or JSON text; errors carry the line of the offending key where known."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError([FieldError((), f"{source} is not valid YAML/JSON: {e}", line)]) from None
    if not isinstance(data, dict):
        raise SpecError([FieldError((), f"{source} must be a mapping of keys to values", 1)])
    try:
        return parse_spec(data)
    except SpecError as e:
        lines = _key_lines(text)
        for err in e.errors:
            err.line = _line_for(lines, err.loc)
        raise


def load_spec_file(path: str | Path) -> StudySpec:
    p = Path(path)
    return load_spec_text(p.read_text(encoding="utf-8"), source=str(p))


def spec_to_json(spec: StudySpec) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(spec.model_dump_json())
    return data


def _field_errors(e: ValidationError) -> list[FieldError]:
    out: list[FieldError] = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        out.append(FieldError(loc, str(err["msg"]).removeprefix("Value error, ")))
    return out


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the user wrote the key: ``space.lr.low``."""
    return ".".join(str(p) for p in loc if not _is_union_tag(p)) or "(spec)"


def _is_union_tag(p: str | int) -> bool:
    # Pydantic puts the discriminator's value in the location of a tagged union member
    # (space.lr.float.low); the user wrote space.lr.low.
    return p in ("float", "int", "categorical", "random", "grid") or (
        isinstance(p, str) and p.startswith("function-")
    )


def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Maps each key path of a YAML/JSON document to the 1-based line it starts on."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def grid_values(spec: GridSamplerSpec, space: Space) -> dict[str, list[ParamValue]]:
    """The values a grid takes for each parameter, in space order."""
    out: dict[str, list[ParamValue]] = {}
    for name, p in space.items():
        given = spec.values.get(name)
        out[name] = list(given) if given is not None else p.grid(spec.n)
    return out
