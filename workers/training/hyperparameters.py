"""A trial's hyperparameters: catalogue defaults, overridden by ``task.fixed``, then by the
trial's sampled ``params``; each value checked against its type, choices and valid range.

The names, types and choices come from :mod:`hpsearch.tasks` (the server validates studies with
the same catalogue, ranges included).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hpsearch import tasks
from hpsearch.space import ParamValue

Value = ParamValue | None


class HyperparameterError(ValueError):
    """A hyperparameter the trainer does not know, or a value it cannot use."""


@dataclass(frozen=True)
class Hyperparameters(Mapping[str, Value]):
    """Resolved values by name; ``explicit`` names those the study set (fixed or sampled)."""

    resolved: Mapping[str, Value]
    explicit: frozenset[str]

    def __getitem__(self, name: str) -> Value:
        return self.resolved[name]

    def __contains__(self, name: object) -> bool:
        return name in self.resolved  # asking whether a trainer has a knob is not reading it

    def __iter__(self) -> Iterator[str]:
        return iter(self.resolved)

    def __len__(self) -> int:
        return len(self.resolved)

    def number(self, name: str) -> float:
        v = self[name]
        assert isinstance(v, int | float), name
        return float(v)

    def integer(self, name: str) -> int:
        v = self[name]
        assert isinstance(v, int), name
        return v

    def flag(self, name: str) -> bool:
        v = self[name]
        assert isinstance(v, bool), name
        return v

    def choice(self, name: str) -> str:
        v = self[name]
        assert isinstance(v, str), name
        return v

    def optional_number(self, name: str) -> float | None:
        return None if self[name] is None else self.number(name)


def resolve(
    trainer: str, fixed: Mapping[str, ParamValue], params: Mapping[str, ParamValue]
) -> Hyperparameters:
    """Merges defaults < fixed < params and checks every value; raises HyperparameterError."""
    if trainer not in tasks.TRAINERS:
        raise HyperparameterError(
            f"unknown trainer {trainer!r}; built-in trainers: {sorted(tasks.TRAINERS)}"
        )
    catalogue = {h.name: h for h in tasks.TRAINERS[trainer]}
    for name in [*fixed, *params]:
        if name not in catalogue:
            raise HyperparameterError(
                f"trainer {trainer} has no hyperparameter {name!r}; known: {sorted(catalogue)}"
            )
    values: dict[str, Value] = {h.name: h.default for h in catalogue.values()}
    values.update(fixed)
    values.update(params)
    checked = {name: _check(catalogue[name], v) for name, v in values.items()}
    return Hyperparameters(checked, frozenset(fixed) | frozenset(params))


def _check(h: tasks.Hyperparameter, v: Value) -> Value:
    if v is None:
        if h.default is None:
            return None  # "not given" is a meaningful value only where it is the default
        raise HyperparameterError(f"hyperparameter {h.name} needs a value ({h.doc})")
    value = _coerce(h, v)
    if h.choices and value not in h.choices:
        raise HyperparameterError(
            f"hyperparameter {h.name}={v!r} is not allowed; allowed values: {list(h.choices)}"
        )
    valid = tasks.RANGES.get(h.name)
    if valid is not None and isinstance(value, int | float) and value not in valid:
        raise HyperparameterError(f"hyperparameter {h.name}={v!r} must be {valid}")
    return value


def _coerce(h: tasks.Hyperparameter, v: ParamValue) -> ParamValue:
    """Accepts what JSON and the samplers produce (an int as 64.0, a flag as 1) and nothing
    looser, so a mistyped study fails here instead of training something else."""
    if h.kind == "str":
        if isinstance(v, str):
            return v
    elif h.kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
    elif h.kind == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
    elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    expected = {"str": "a string", "bool": "true or false", "int": "an integer"}
    raise HyperparameterError(
        f"hyperparameter {h.name}={v!r} must be {expected.get(h.kind, 'a finite number')}"
    )
