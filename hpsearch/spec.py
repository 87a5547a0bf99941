"""The study spec: the public contract users write in YAML or JSON.

Keys may be added by later versions, never renamed. Validation names the field and the reason;
:func:`load_spec_text` also names the line of the file.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from hpsearch import commands, tasks
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
ENTRY_POINT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
"""``package.module:function``: how a study names custom training code (and a worker allows it)."""

# Ceilings on the numbers of a spec (docs/spec.md). Integers fit in 32 bits: far above any
# layer width, batch size or epoch count a trainer takes, and what every SQL integer and
# torch size holds, so a value that big is a typo to refuse, not a trial to crash. Float
# bounds stay within 1e15, where linear sampling's ``high - low`` cannot overflow and a
# double still counts every integer. Seeds are what numpy takes.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
FLOAT_BOUND = 1e15
SEED_MAX = 2**32 - 1
Int32 = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]
BoundedFloat = Annotated[float, Field(ge=-FLOAT_BOUND, le=FLOAT_BOUND)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
# A categorical choice, a grid value or a fixed hyperparameter: a number within the same
# ceilings, a string, or a boolean.
Choice = bool | Int32 | BoundedFloat | str


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
        # ``loc`` is already in the user's terms (see user_loc).
        return ".".join(str(p) for p in self.loc) or "(spec)"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


class _Strict(BaseModel):
    # NaN and infinity have no JSON form: stored, they would come back as null and break the
    # study (a choice of null, a target of null), so every number in a spec must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    low: BoundedFloat
    high: BoundedFloat
    scale: Scale = "linear"
    step: BoundedFloat | None = None

    def build(self, name: str) -> Param:
        return FloatParam(name, self.low, self.high, self.scale, self.step)


class IntParamSpec(_Strict):
    type: Literal["int"]
    low: Int32
    high: Int32
    scale: Literal["linear", "log"] = "linear"
    step: int = Field(default=1, le=INT_MAX)

    def build(self, name: str) -> Param:
        return IntParam(name, self.low, self.high, self.scale, self.step)


class CategoricalParamSpec(_Strict):
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=1000)

    def build(self, name: str) -> Param:
        return CategoricalParam(name, tuple(self.choices))


ParamSpec = Annotated[
    FloatParamSpec | IntParamSpec | CategoricalParamSpec, Field(discriminator="type")
]


class _PackableSampler(_Strict):
    # Sample the architecture (hyperparameters that shape the network) once per group of
    # `pack` consecutive trials, so `hpsearch worker --pack K` finds partners to train as one
    # packed model. The other parameters stay the sampler's own. See docs/packing.md.
    pack: int = Field(default=1, ge=1, le=1024)


class RandomSamplerSpec(_PackableSampler):
    kind: Literal["random"]
    seed: Seed | None = None


class GridSamplerSpec(_Strict):
    """All combinations: ``values`` per parameter where given, else ``n`` points on its scale."""

    kind: Literal["grid"]
    n: int = Field(default=5, ge=1, le=1000)
    values: dict[str, list[Choice]] = Field(default_factory=dict)
    shuffle: bool = False
    seed: Seed | None = None


class CoarseToFineSamplerSpec(_PackableSampler):
    """Random rounds that zoom in: see :mod:`hpsearch.samplers.coarse_to_fine` for the keys."""

    kind: Literal["coarse_to_fine"]
    rounds: int = Field(default=3, ge=1, le=1000)
    trials_per_round: int = Field(default=20, ge=1, le=1_000_000)
    # None (the default): adapted to the space's dimension and each round's spread.
    top_k: int | None = Field(default=None, ge=1, le=1_000_000)
    margin: float = Field(default=0.1, ge=0, le=10)
    seed: Seed | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k_fits_a_round(cls, v: int | None, info: Any) -> int | None:
        per_round = info.data.get("trials_per_round")
        if v is not None and per_round is not None and v > per_round:
            raise ValueError(f"must be <= trials_per_round ({per_round}), got {v}")
        return v


class TpeSamplerSpec(_PackableSampler):
    """Optuna's TPE; running trials count as bad (constant liar) so workers get distinct ones."""

    kind: Literal["tpe"]
    n_startup_trials: int = Field(default=10, ge=0, le=1_000_000)
    multivariate: bool = True
    seed: Seed | None = None


class QmcSamplerSpec(_PackableSampler):
    """A scrambled Sobol or Halton sequence over the unit cube, trial ``n`` taking point ``n``."""

    kind: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True
    seed: Seed | None = None


class CmaesSamplerSpec(_PackableSampler):
    """Optuna's CMA-ES (categoricals are sampled at random; it has no notion of constraints)."""

    kind: Literal["cmaes"]
    n_startup_trials: int = Field(default=1, ge=0, le=1_000_000)
    sigma0: float | None = Field(default=None, gt=0, le=1)
    popsize: int | None = Field(default=None, ge=2, le=100_000)
    seed: Seed | None = None


class GpSamplerSpec(_PackableSampler):
    """Optuna's Gaussian-process sampler (needs torch and scipy on the server)."""

    kind: Literal["gp"]
    n_startup_trials: int = Field(default=10, ge=0, le=1_000_000)
    deterministic_objective: bool = False
    seed: Seed | None = None


SamplerSpec = Annotated[
    RandomSamplerSpec
    | GridSamplerSpec
    | CoarseToFineSamplerSpec
    | TpeSamplerSpec
    | QmcSamplerSpec
    | CmaesSamplerSpec
    | GpSamplerSpec,
    Field(discriminator="kind"),
]


class BudgetSpec(_Strict):
    max_trials: int = Field(default=20, ge=1, le=10_000_000)
    parallelism: int = Field(default=1, ge=1, le=10_000)
    max_failures: int | None = Field(default=None, ge=1, le=10_000_000)
    max_attempts: int = Field(default=3, ge=1, le=100)
    time_limit_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86_400)
    target_value: float | None = None


def failure_limit(max_failures: int | None, max_trials: int) -> int:
    """``budget.max_failures``, or its default: half of ``max_trials``, at least 3."""
    return max_failures if max_failures is not None else max(3, max_trials // 2)


class SplitSpec(_Strict):
    """Train/dev/test fractions (the rest of 1 is unused); ``train_dev`` is carved from train."""

    train: float = Field(default=0.6, gt=0, lt=1)
    dev: float = Field(default=0.2, gt=0, lt=1)
    test: float = Field(default=0.2, ge=0, lt=1)
    train_dev: float = Field(default=0.0, ge=0, lt=1)
    seed: Seed = 0

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

    ``trainer: custom`` runs the user's function ``entry_point`` (``module:function``) instead;
    only workers started with ``--allow module:function`` run it, and its hyperparameter names
    are the user's own.

    ``trainer: command`` runs the user's program ``command`` (an argv with ``{name}``
    placeholders) in ``workdir``; only workers started with an ``--allow-command`` prefix of it
    run it. See ``workers/command.py``.
    """

    trainer: str
    entry_point: str | None = Field(default=None, max_length=300)
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )
    workdir: str | None = Field(default=None, min_length=1, max_length=4096)
    # SIGTERM, then SIGKILL this many seconds later, when a command trial is pruned or stopped.
    grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    metrics_format: Literal["json", "key_value"] = "json"
    dataset: str = "digits"
    data_path: str | None = Field(default=None, max_length=4096)
    split: SplitSpec = Field(default_factory=SplitSpec)
    normalize: bool = True
    epochs: int = Field(default=10, ge=1, le=100_000)
    fixed: dict[str, Choice] = Field(default_factory=dict)
    # Save a checkpoint (to the server) every this many epochs, and after the last or a stop;
    # a re-queued trial resumes from it. 0: never (a lost trial restarts from scratch).
    checkpoint_every: int = Field(default=1, ge=0, le=100_000)
    # The metrics a custom or command trainer reports: declared, the objective, constraints
    # and pruner are checked against them at submit, as a built-in trainer's are
    # (see tasks.METRICS).
    metrics: list[Annotated[str, Field(pattern=_NAME.pattern)]] | None = Field(
        default=None, max_length=200
    )

    @field_validator("trainer")
    @classmethod
    def _known_trainer(cls, v: str) -> str:
        if v not in tasks.TRAINERS and v not in tasks.USER_CODE:
            hint = tasks.did_you_mean(v, [*tasks.TRAINERS, *tasks.USER_CODE])
            raise ValueError(
                f"unknown trainer {v!r}{hint}; built-in trainers: {sorted(tasks.TRAINERS)}, "
                f"{tasks.CUSTOM!r} with an entry_point, or {tasks.COMMAND!r} with a command"
            )
        return v

    @field_validator("entry_point")
    @classmethod
    def _entry_point_form(cls, v: str | None) -> str | None:
        if v is not None and not ENTRY_POINT.match(v):
            raise ValueError(f"{v!r} is not 'module:function' (e.g. mypkg.train:train)")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in tasks.DATASETS:
            hint = tasks.did_you_mean(v, tasks.DATASETS)
            raise ValueError(f"unknown dataset {v!r}{hint}; known: {list(tasks.DATASETS)}")
        return v


class NoPrunerSpec(_Strict):
    """Every trial runs all its epochs."""

    kind: Literal["none"]


class MedianPrunerSpec(_Strict):
    """Stops a trial whose best value so far is worse than the median of the completed trials'
    values at the same step. Steps up to ``n_warmup_steps`` are never judged, nor any step
    before ``n_startup_trials`` trials have completed; then every ``interval``-th step is.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["median"]
    n_startup_trials: int = Field(default=5, ge=0, le=1_000_000)
    n_warmup_steps: int = Field(default=0, ge=0, le=1_000_000)
    interval: int = Field(default=1, ge=1, le=1_000_000)
    metric: str | None = Field(default=None, pattern=_NAME.pattern)
    direction: Direction | None = None


class AshaPrunerSpec(_Strict):
    """Asynchronous successive halving: rungs at steps ``min_resource * reduction_factor **
    (min_early_stopping_rate + r)``; a trial reaching a rung goes on only if its value is in
    the top ``1/reduction_factor`` of all trials that reached that rung so far.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["asha"]
    min_resource: int = Field(default=1, ge=1, le=1_000_000)
    reduction_factor: int = Field(default=3, ge=2, le=1000)
    min_early_stopping_rate: int = Field(default=0, ge=0, le=100)
    metric: str | None = Field(default=None, pattern=_NAME.pattern)
    direction: Direction | None = None


class HyperbandPrunerSpec(_Strict):
    """Hyperband as Optuna runs it: each trial is assigned to one of ``floor(log_η(max_resource
    / min_resource)) + 1`` brackets (by its number), and each bracket is an asynchronous
    successive halving of its own whose first rung is at ``min_resource · η^bracket``; a trial
    competes only with its own bracket. ``max_resource`` defaults to ``task.epochs``.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["hyperband"]
    min_resource: int = Field(default=1, ge=1, le=1_000_000)
    max_resource: int | None = Field(default=None, ge=1, le=1_000_000)
    reduction_factor: int = Field(default=3, ge=2, le=1000)
    metric: str | None = Field(default=None, pattern=_NAME.pattern)
    direction: Direction | None = None

    @field_validator("max_resource")
    @classmethod
    def _at_least_min_resource(cls, v: int | None, info: Any) -> int | None:
        low = info.data.get("min_resource")
        if v is not None and low is not None and v < low:
            raise ValueError(f"must be >= min_resource ({low}), got {v}")
        return v


PrunerSpec = Annotated[
    NoPrunerSpec | MedianPrunerSpec | AshaPrunerSpec | HyperbandPrunerSpec,
    Field(discriminator="kind"),
]


class NoSchedulerSpec(_Strict):
    """Every trial trains with its own hyperparameters from start to end."""

    kind: Literal["none"]


class PbtSchedulerSpec(_Strict):
    """Population-based training (see :mod:`hpsearch.pbt`): every ``interval`` epochs a trial
    in the bottom ``quantile`` of the trials at that epoch is replaced by a copy of a
    top-``quantile`` trial's checkpoint that goes on with perturbed hyperparameters: each
    multiplied, in its own scale, by one of ``perturb``'s factors, or with probability
    ``resample_probability`` drawn afresh (categoricals are only ever redrawn)."""

    kind: Literal["pbt"]
    population: int = Field(default=8, ge=2, le=10_000)
    interval: int = Field(default=2, ge=1, le=100_000)
    quantile: float = Field(default=0.25, gt=0, le=0.5)
    perturb: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [0.8, 1.2], min_length=1, max_length=20
    )
    resample_probability: float = Field(default=0.25, ge=0, le=1)


SchedulerSpec = Annotated[NoSchedulerSpec | PbtSchedulerSpec, Field(discriminator="kind")]


class RequiresSpec(_Strict):
    """What a worker needs to be given the study's trials (see :func:`hpsearch.tasks.unmet`):
    a device kind, at least ``gpus`` GPUs, and every one of ``labels`` among its ``--label``s.
    A latency constraint is then measured on that device."""

    device: Literal["cpu", "cuda"] | None = None
    gpus: int = Field(default=0, ge=0, le=64)
    labels: dict[
        Annotated[str, Field(pattern=_NAME.pattern)], Annotated[str, Field(max_length=200)]
    ] = Field(default_factory=dict, max_length=20)

    @field_validator("gpus")
    @classmethod
    def _gpus_need_cuda(cls, v: int, info: Any) -> int:
        if v and info.data.get("device") == "cpu":
            raise ValueError("device cpu has no GPUs: use device cuda, or gpus 0")
        return v


class StudySpec(_Strict):
    name: str = Field(pattern=_NAME.pattern)
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
        # Every error at once: the parts that did validate are still checked against the
        # trainer, so a user fixes one round of errors, not one round per layer of checks.
        raise SpecError(_field_errors(e) + _catalogue_errors(_Parts.of_data(data))) from None
    errors = _cross_field_errors(spec)
    if errors:
        raise SpecError(errors)
    return spec


_PARAM: TypeAdapter[Any] = TypeAdapter(ParamSpec)
_PRUNER: TypeAdapter[Any] = TypeAdapter(PrunerSpec)


@dataclass(frozen=True)
class _Parts:
    """The sections of a spec that the trainer's catalogue checks, each one that validated
    on its own (a spec with errors elsewhere is still checked here)."""

    task: TaskSpec | None
    space: dict[str, Any]
    objective: ObjectiveSpec | None
    constraints: list[tuple[int, ConstraintSpec]]
    pruner: Any

    @classmethod
    def of_spec(cls, spec: StudySpec) -> _Parts:
        constraints = list(enumerate(spec.constraints))
        return cls(spec.task, dict(spec.space), spec.objective, constraints, spec.pruner)

    @classmethod
    def of_data(cls, data: Mapping[str, Any]) -> _Parts:
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


def _catalogue_errors(parts: _Parts) -> list[FieldError]:
    """What the trainer knows: its hyperparameters' names and values, and its metrics."""
    if parts.task is None:
        return []
    return _trainer_errors(parts) + _metric_errors(parts)


def _cross_field_errors(spec: StudySpec) -> list[FieldError]:
    """Checks that need the whole spec: bounds against scales, names against the trainer."""
    errors: list[FieldError] = []
    for name, p in spec.space.items():
        try:
            p.build(name)
        except SpaceError as e:
            errors.append(FieldError(("space", name), str(e).removeprefix(f"{name}: ")))
    errors.extend(_catalogue_errors(_Parts.of_spec(spec)))
    errors.extend(_test_set_errors(spec))
    errors.extend(_pruner_errors(spec))
    errors.extend(_scheduler_errors(spec))
    overlap = sorted(set(spec.space) & set(spec.task.fixed))
    for name in overlap:
        errors.append(FieldError(("task", "fixed", name), "is also searched in space"))
    if isinstance(spec.sampler, GridSamplerSpec):
        for name in spec.sampler.values:
            if name not in spec.space:
                errors.append(FieldError(("sampler", "values", name), "not in the space"))
        if spec.sampler.shuffle and not errors:
            errors.extend(_shuffled_grid_errors(spec.sampler, spec.build_space()))
    elif spec.sampler.pack > 1 and spec.task.trainer in tasks.USER_CODE:
        errors.append(FieldError(("sampler", "pack"), "packing needs a built-in trainer"))
    return errors


MAX_SHUFFLED_GRID = 1_000_000
"""A shuffled grid holds its whole visiting order in memory (8 bytes a combination)."""


def _shuffled_grid_errors(sampler: GridSamplerSpec, space: Space) -> list[FieldError]:
    size = math.prod(len(v) for v in grid_values(sampler, space).values())
    if size <= MAX_SHUFFLED_GRID:
        return []
    return [
        FieldError(
            ("sampler", "shuffle"),
            f"a shuffled grid holds at most {MAX_SHUFFLED_GRID:,} combinations, this one "
            f"{size:,}: use fewer values (sampler.n, sampler.values), or no shuffle",
        )
    ]


def _trainer_errors(parts: _Parts) -> list[FieldError]:
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


def _metric_errors(parts: _Parts) -> list[FieldError]:
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


def _user_code_errors(parts: _Parts) -> list[FieldError]:
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


def _pruner_errors(spec: StudySpec) -> list[FieldError]:
    pruner = spec.pruner
    if isinstance(pruner, NoPrunerSpec) or pruner.metric in (None, spec.objective.metric):
        return []
    if pruner.direction is None:
        return [
            FieldError(
                ("pruner", "direction"),
                f"required when the pruner's metric ({pruner.metric}) is not the objective's",
            )
        ]
    return []


def _scheduler_errors(spec: StudySpec) -> list[FieldError]:
    """PBT needs its population as the budget, checkpoints to copy, and epochs to exploit in;
    it replaces weak trials itself, so it takes no pruner."""
    pbt = spec.scheduler
    if not isinstance(pbt, PbtSchedulerSpec):
        return []
    errors = []
    if spec.budget.max_trials < pbt.population:
        errors.append(
            FieldError(
                ("scheduler", "population"),
                f"must be <= budget.max_trials ({spec.budget.max_trials}): the population is "
                "the study's first trials (each exploit then adds one to the budget)",
            )
        )
    if pbt.population * pbt.quantile < 1 - 1e-9:
        errors.append(
            FieldError(
                ("scheduler", "quantile"),
                f"{pbt.quantile:g} of a population of {pbt.population} is no trial: use at "
                f"least {1 / pbt.population:.3g}",
            )
        )
    if pbt.interval >= spec.task.epochs:
        errors.append(
            FieldError(
                ("scheduler", "interval"),
                f"must be below task.epochs ({spec.task.epochs}), or nothing is ever exploited",
            )
        )
    if spec.task.checkpoint_every == 0:
        errors.append(
            FieldError(("task", "checkpoint_every"), "pbt copies checkpoints: must be >= 1")
        )
    if not isinstance(spec.pruner, NoPrunerSpec):
        errors.append(
            FieldError(("pruner", "kind"), "pbt replaces weak trials itself: use pruner none")
        )
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
    return [
        FieldError(user_loc(loc), message)
        for loc, message in plain_errors([_with_suggestion(err) for err in e.errors()])
    ]


def _with_suggestion(err: Any) -> Any:
    """An unknown key's error, with the known key it was most likely meant to be."""
    if err["type"] != "extra_forbidden":
        return err
    model = _model_at(tuple(err["loc"][:-1]))
    if model is None:
        return err
    key = str(err["loc"][-1])
    hint = tasks.did_you_mean(key, model.model_fields)
    return {**err, "msg": f"unknown key{hint}; known: {', '.join(model.model_fields)}"}


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The spec model that pydantic's raw location ``loc`` points into, if it is one."""
    kind: Any = StudySpec
    for part in loc:
        kind = _inside(kind, part)
        if kind is None:
            return None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _inside(kind: Any, part: str | int) -> Any:
    """The type at ``part`` of a value of type ``kind``: a model's field, a dict's or list's
    item, or the member of a tagged union that the tag ``part`` names."""
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        info = kind.model_fields.get(str(part))
        return None if info is None else info.annotation
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    for member in args:  # a union: the member whose tag (type or kind) is ``part``
        if isinstance(member, type) and issubclass(member, BaseModel):
            for tag in ("type", "kind"):
                info = member.model_fields.get(tag)
                if info is not None and typing.get_args(info.annotation) == (part,):
                    return member
    return None


_SCALAR_MEMBERS = frozenset({"bool", "int", "float", "str"})


def plain_errors(
    errors: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str | int, ...], str]]:
    """Pydantic's errors as (location, message), one per value or key the user got wrong.

    A value of a ``bool | int | float | str`` field that fits none of them gets one error per
    member (``choices.1.bool``, ``choices.1.int``, ...). They are merged into one error for the
    value, keeping the telling message: "a finite number" when the value was NaN or infinite.
    """
    located = []
    for err in errors:
        loc, message = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":  # the key itself is wrong (a metric's name): name it
            loc, message = loc[:-1], f"invalid name: {message}"
        located.append((loc, message))
    members: dict[tuple[str | int, ...], list[str]] = {}
    for loc, message in located:
        if len(loc) > 1 and loc[-1] in _SCALAR_MEMBERS:
            members.setdefault(loc[:-1], []).append(message)
    out: list[tuple[tuple[str | int, ...], str]] = []
    for loc, message in located:
        holder = loc[:-1]
        if len(members.get(holder, ())) < 2:
            out.append((loc, message))
        elif holder in members:
            said = members.pop(holder)
            finite = [m for m in said if "finite" in m]
            out.append((holder, finite[0] if finite else "must be a boolean, number or string"))
    return out


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the user wrote the key: ``space.lr.low``."""
    return ".".join(str(p) for p in user_loc(loc)) or "(spec)"


def user_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drops what pydantic inserts into the location of a tagged-union member.

    Pydantic reports ``space.lr.float.low`` for the user's ``space.lr.low``: the tag follows
    the key that holds the union. Only there is it dropped, so a parameter that happens to be
    named ``gp`` or ``int`` keeps its name in the path.
    """
    out: list[str | int] = []
    for i, p in enumerate(loc):
        holder = tuple(loc[:i])
        tagged = (len(holder) == 2 and holder[0] == "space") or holder in (
            ("sampler",),
            ("pruner",),
            ("scheduler",),
        )
        if (tagged and isinstance(p, str)) or (isinstance(p, str) and p.startswith("function-")):
            continue
        out.append(p)
    return tuple(out)


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
