"""Search spaces: parameters that know their own scale.

Every parameter maps its values to and from the unit interval ``[0, 1]`` *in its own scale*.
Random sampling draws ``u ~ U[0, 1]`` and maps it back; coarse-to-fine shrinks intervals of
``u``; plots draw on the same axis. Nothing outside this module re-derives a scale.

Scales:

- ``linear``: ``u = (x - low) / (high - low)``.
- ``log``: ``u`` is linear in ``log10(x)``, so ``lr = 10**r, r ~ U[-4, 0]`` for ``[1e-4, 1]``.
- ``reverse_log``: ``u`` is linear in ``log10(1 - x)`` (reversed so that ``u`` grows with
  ``x``): ``beta = 1 - 10**r, r ~ U[-3, -1]`` for ``[0.9, 0.999]``. The averaging window
  ``1 / (1 - beta)`` is what matters, and it is most sensitive near 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Scale = Literal["linear", "log", "reverse_log"]
ParamValue = float | int | str | bool
ParamKind = Literal["float", "int", "categorical"]


class SpaceError(ValueError):
    """A parameter definition or value that does not fit its space."""


def _to_scaled(x: float, scale: Scale) -> float:
    if scale == "log":
        return math.log10(x)
    if scale == "reverse_log":
        # Negated so that the scaled axis increases with x, like the other scales.
        return -math.log10(1.0 - x)
    return x


def _from_scaled(s: float, scale: Scale) -> float:
    if scale == "log":
        return float(10.0**s)
    if scale == "reverse_log":
        return 1.0 - float(10.0 ** (-s))
    return s


@dataclass(frozen=True)
class Interval:
    """A closed sub-interval of the unit interval, in a parameter's own scale."""

    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lo <= self.hi <= 1.0:
            raise SpaceError(f"interval [{self.lo}, {self.hi}] is not inside [0, 1]")

    @property
    def width(self) -> float:
        return self.hi - self.lo


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    scale: Scale = "linear"
    step: float | None = None
    kind: ParamKind = field(default="float", init=False)

    def __post_init__(self) -> None:
        _check_bounds(self.name, self.low, self.high, self.scale)
        if self.step is not None and self.step <= 0:
            raise SpaceError(f"{self.name}: step must be > 0, got {self.step}")

    def to_unit(self, value: ParamValue) -> float:
        x = _as_number(self.name, value)
        return _unit_from_bounds(self.name, x, self.low, self.high, self.scale)

    def from_unit(self, u: float) -> float:
        x = _value_from_unit(u, self.low, self.high, self.scale)
        if self.step is not None:
            x = self.low + round((x - self.low) / self.step) * self.step
        return min(max(x, self.low), self.high)

    def contains(self, value: ParamValue) -> bool:
        return isinstance(value, int | float) and self.low <= float(value) <= self.high

    def grid(self, n: int) -> list[ParamValue]:
        return _dedupe([self.from_unit(i / (n - 1) if n > 1 else 0.5) for i in range(n)])


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    scale: Scale = "linear"
    step: int = 1
    kind: ParamKind = field(default="int", init=False)

    def __post_init__(self) -> None:
        if self.scale == "reverse_log":
            raise SpaceError(f"{self.name}: reverse_log is for floats in (0, 1), not ints")
        _check_bounds(self.name, self.low, self.high, self.scale)
        if self.step < 1:
            raise SpaceError(f"{self.name}: step must be >= 1, got {self.step}")

    def to_unit(self, value: ParamValue) -> float:
        x = _as_number(self.name, value)
        # Each integer owns the slice [v - 0.5, v + 0.5] of the continuous range, so the ends
        # are as likely as the middle under uniform sampling of u.
        lo, hi = self._widened()
        return _unit_from_bounds(self.name, min(max(x, lo), hi), lo, hi, self.scale)

    def from_unit(self, u: float) -> int:
        lo, hi = self._widened()
        x = _value_from_unit(u, lo, hi, self.scale)
        v = self.low + round((x - self.low) / self.step) * self.step
        return int(min(max(v, self.low), self.high))

    def contains(self, value: ParamValue) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )

    def grid(self, n: int) -> list[ParamValue]:
        count = (self.high - self.low) // self.step + 1
        if n >= count:
            return list(range(self.low, self.high + 1, self.step))
        return _dedupe([self.from_unit((i + 0.5) / n) for i in range(n)])

    def _widened(self) -> tuple[float, float]:
        half = self.step / 2
        if self.scale == "log":
            # Keep the lower edge positive for the logarithm.
            return self.low * (1 - half / max(self.low, 1)), self.high + half
        return self.low - half, self.high + half


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[ParamValue, ...]
    kind: ParamKind = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        if not self.choices:
            raise SpaceError(f"{self.name}: choices must not be empty")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise SpaceError(f"{self.name}: choices must be distinct")

    @property
    def scale(self) -> Scale:
        return "linear"

    def to_unit(self, value: ParamValue) -> float:
        try:
            index = self.index(value)
        except ValueError:
            raise SpaceError(f"{self.name}: {value!r} is not one of {list(self.choices)}") from None
        return (index + 0.5) / len(self.choices)

    def from_unit(self, u: float) -> ParamValue:
        index = min(int(u * len(self.choices)), len(self.choices) - 1)
        return self.choices[max(index, 0)]

    def index(self, value: ParamValue) -> int:
        for i, choice in enumerate(self.choices):
            # 1 == True in Python; a choice list [1, True] must keep them apart.
            if choice == value and type(choice) is type(value):
                return i
        for i, choice in enumerate(self.choices):
            if isinstance(choice, float) and isinstance(value, int) and choice == value:
                return i
        raise ValueError(value)

    def contains(self, value: ParamValue) -> bool:
        try:
            self.index(value)
        except ValueError:
            return False
        return True

    def grid(self, n: int) -> list[ParamValue]:
        return list(self.choices)


Param = FloatParam | IntParam | CategoricalParam


class Space(Mapping[str, Param]):
    """An ordered set of named parameters."""

    def __init__(self, params: Sequence[Param]) -> None:
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise SpaceError("parameter names must be unique")
        if not params:
            raise SpaceError("a space needs at least one parameter")
        self._params: dict[str, Param] = {p.name: p for p in params}

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def params(self) -> list[Param]:
        return list(self._params.values())

    def from_unit(self, point: Mapping[str, float]) -> dict[str, ParamValue]:
        return {name: p.from_unit(point[name]) for name, p in self._params.items()}

    def to_unit(self, values: Mapping[str, ParamValue]) -> dict[str, float]:
        return {name: p.to_unit(values[name]) for name, p in self._params.items()}

    def validate(self, values: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """Checks a full parameter set (e.g. a user's enqueued guess) against the space."""
        missing = [n for n in self._params if n not in values]
        extra = [n for n in values if n not in self._params]
        if missing or extra:
            raise SpaceError(
                f"params must name exactly {list(self._params)}; missing {missing}, unknown {extra}"
            )
        for name, p in self._params.items():
            if not p.contains(values[name]):
                raise SpaceError(f"{name}: {values[name]!r} is outside the space")
        return {name: values[name] for name in self._params}


def _check_bounds(name: str, low: float, high: float, scale: Scale) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpaceError(f"{name}: bounds must be finite numbers")
    if low > high:
        raise SpaceError(f"{name}: low ({low}) must be <= high ({high})")
    if scale == "log" and low <= 0:
        raise SpaceError(f"{name}: log scale needs low > 0, got {low}")
    if scale == "reverse_log" and not (low >= 0 and high < 1):
        raise SpaceError(
            f"{name}: reverse_log scale needs 0 <= low and high < 1 "
            f"(it samples 1 - value on a log scale), got [{low}, {high}]"
        )


def _as_number(name: str, value: ParamValue) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _unit_from_bounds(name: str, x: float, low: float, high: float, scale: Scale) -> float:
    if not low <= x <= high:
        raise SpaceError(f"{name}: {x} is outside [{low}, {high}]")
    a, b = _to_scaled(low, scale), _to_scaled(high, scale)
    if b == a:
        return 0.5
    return (_to_scaled(x, scale) - a) / (b - a)


def _value_from_unit(u: float, low: float, high: float, scale: Scale) -> float:
    u = min(max(u, 0.0), 1.0)
    a, b = _to_scaled(low, scale), _to_scaled(high, scale)
    x = _from_scaled(a + u * (b - a), scale)
    return min(max(x, low), high)


def _dedupe(values: list[ParamValue]) -> list[ParamValue]:
    seen: list[ParamValue] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen
