"""The ``objective`` and ``constraints`` sections."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from hpsearch.objective import ConstraintOp, Direction
from hpsearch.spec.base import NAME, Strict


class ObjectiveSpec(Strict):
    metric: str = Field(pattern=NAME.pattern)
    direction: Direction


class ConstraintSpec(Strict):
    metric: str = Field(pattern=NAME.pattern)
    op: ConstraintOp
    threshold: float

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number")
        return v
