"""The ``pruner`` and ``scheduler`` sections, and their checks against the rest of the spec."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from hpsearch.objective import Direction
from hpsearch.spec.base import NAME, Strict
from hpsearch.spec.errors import FieldError
from hpsearch.spec.task import BudgetSpec, TaskSpec


class NoPrunerSpec(Strict):
    """Every trial runs all its epochs."""

    kind: Literal["none"]


class MedianPrunerSpec(Strict):
    """Stops a trial whose best value so far is worse than the median of the completed trials'
    values at the same step. Steps up to ``n_warmup_steps`` are never judged, nor any step
    before ``n_startup_trials`` trials have completed; then every ``interval``-th step is.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["median"]
    n_startup_trials: int = Field(default=5, ge=0, le=1_000_000)
    n_warmup_steps: int = Field(default=0, ge=0, le=1_000_000)
    interval: int = Field(default=1, ge=1, le=1_000_000)
    metric: str | None = Field(default=None, pattern=NAME.pattern)
    direction: Direction | None = None


class AshaPrunerSpec(Strict):
    """Asynchronous successive halving: rungs at steps ``min_resource * reduction_factor **
    (min_early_stopping_rate + r)``; a trial reaching a rung goes on only if its value is in
    the top ``1/reduction_factor`` of all trials that reached that rung so far.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["asha"]
    min_resource: int = Field(default=1, ge=1, le=1_000_000)
    reduction_factor: int = Field(default=3, ge=2, le=1000)
    min_early_stopping_rate: int = Field(default=0, ge=0, le=100)
    metric: str | None = Field(default=None, pattern=NAME.pattern)
    direction: Direction | None = None


class HyperbandPrunerSpec(Strict):
    """Hyperband as Optuna runs it: each trial is assigned to one of ``floor(log_η(max_resource
    / min_resource)) + 1`` brackets (by its number), and each bracket is an asynchronous
    successive halving of its own whose first rung is at ``min_resource · η^bracket``; a trial
    competes only with its own bracket. ``max_resource`` defaults to ``task.epochs``.
    ``metric``/``direction`` default to the objective's."""

    kind: Literal["hyperband"]
    min_resource: int = Field(default=1, ge=1, le=1_000_000)
    max_resource: int | None = Field(default=None, ge=1, le=1_000_000)
    reduction_factor: int = Field(default=3, ge=2, le=1000)
    metric: str | None = Field(default=None, pattern=NAME.pattern)
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


class NoSchedulerSpec(Strict):
    """Every trial trains with its own hyperparameters from start to end."""

    kind: Literal["none"]


class PbtSchedulerSpec(Strict):
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


def pruner_errors(pruner: PrunerSpec, objective_metric: str) -> list[FieldError]:
    """A pruner that judges another metric than the objective's must say which way is better."""
    if isinstance(pruner, NoPrunerSpec) or pruner.metric in (None, objective_metric):
        return []
    if pruner.direction is None:
        return [
            FieldError(
                ("pruner", "direction"),
                f"required when the pruner's metric ({pruner.metric}) is not the objective's",
            )
        ]
    return []


def scheduler_errors(
    scheduler: SchedulerSpec, pruner: PrunerSpec, budget: BudgetSpec, task: TaskSpec
) -> list[FieldError]:
    """PBT needs its population as the budget, checkpoints to copy, and epochs to exploit in;
    it replaces weak trials itself, so it takes no pruner."""
    pbt = scheduler
    if not isinstance(pbt, PbtSchedulerSpec):
        return []
    errors = []
    if budget.max_trials < pbt.population:
        errors.append(
            FieldError(
                ("scheduler", "population"),
                f"must be <= budget.max_trials ({budget.max_trials}): the population is "
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
    if pbt.interval >= task.epochs:
        errors.append(
            FieldError(
                ("scheduler", "interval"),
                f"must be below task.epochs ({task.epochs}), or nothing is ever exploited",
            )
        )
    if task.checkpoint_every == 0:
        errors.append(
            FieldError(("task", "checkpoint_every"), "pbt copies checkpoints: must be >= 1")
        )
    if not isinstance(pruner, NoPrunerSpec):
        errors.append(
            FieldError(("pruner", "kind"), "pbt replaces weak trials itself: use pruner none")
        )
    return errors
