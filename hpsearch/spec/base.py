"""The building blocks of every spec section: the strict model, names, and numeric ceilings."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
"""A study's, parameter's, metric's or label's name."""
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


class Strict(BaseModel):
    # NaN and infinity have no JSON form: stored, they would come back as null and break the
    # study (a choice of null, a target of null), so every number in a spec must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
