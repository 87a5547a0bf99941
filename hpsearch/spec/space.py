"""The ``space`` section: one spec per parameter type, each building its `hpsearch.space` one."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hpsearch.space import CategoricalParam, FloatParam, IntParam, Param, Scale
from hpsearch.spec.base import INT_MAX, BoundedFloat, Choice, Int32, Strict


class FloatParamSpec(Strict):
    type: Literal["float"]
    low: BoundedFloat
    high: BoundedFloat
    scale: Scale = "linear"
    step: BoundedFloat | None = None

    def build(self, name: str) -> Param:
        return FloatParam(name, self.low, self.high, self.scale, self.step)


class IntParamSpec(Strict):
    type: Literal["int"]
    low: Int32
    high: Int32
    scale: Literal["linear", "log"] = "linear"
    step: int = Field(default=1, le=INT_MAX)

    def build(self, name: str) -> Param:
        return IntParam(name, self.low, self.high, self.scale, self.step)


class CategoricalParamSpec(Strict):
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=1000)

    def build(self, name: str) -> Param:
        return CategoricalParam(name, tuple(self.choices))


ParamSpec = Annotated[
    FloatParamSpec | IntParamSpec | CategoricalParamSpec, Field(discriminator="type")
]
