"""The ``task`` (what a worker trains, on which split), ``budget`` and ``requires`` sections."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from hpsearch import tasks
from hpsearch.spec.base import ENTRY_POINT, NAME, Choice, Seed, Strict


class BudgetSpec(Strict):
    max_trials: int = Field(default=20, ge=1, le=10_000_000)
    parallelism: int = Field(default=1, ge=1, le=10_000)
    max_failures: int | None = Field(default=None, ge=1, le=10_000_000)
    max_attempts: int = Field(default=3, ge=1, le=100)
    time_limit_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86_400)
    target_value: float | None = None


def failure_limit(max_failures: int | None, max_trials: int) -> int:
    """``budget.max_failures``, or its default: half of ``max_trials``, at least 3."""
    return max_failures if max_failures is not None else max(3, max_trials // 2)


class SplitSpec(Strict):
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


class TaskSpec(Strict):
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
    metrics: list[Annotated[str, Field(pattern=NAME.pattern)]] | None = Field(
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


class RequiresSpec(Strict):
    """What a worker needs to be given the study's trials (see :func:`hpsearch.tasks.unmet`):
    a device kind, at least ``gpus`` GPUs, and every one of ``labels`` among its ``--label``s.
    A latency constraint is then measured on that device."""

    device: Literal["cpu", "cuda"] | None = None
    gpus: int = Field(default=0, ge=0, le=64)
    labels: dict[
        Annotated[str, Field(pattern=NAME.pattern)], Annotated[str, Field(max_length=200)]
    ] = Field(default_factory=dict, max_length=20)

    @field_validator("gpus")
    @classmethod
    def _gpus_need_cuda(cls, v: int, info: Any) -> int:
        if v and info.data.get("device") == "cpu":
            raise ValueError("device cpu has no GPUs: use device cuda, or gpus 0")
        return v
