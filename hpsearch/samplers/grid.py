"""Grid search: every combination, for small discrete spaces and for comparisons.

Random search beats a grid when few parameters matter (a 5×5 grid over two parameters tests only
5 values of the one that matters), so a grid is never the default.
"""

from __future__ import annotations

import math

import numpy as np

from hpsearch.objective import Objective
from hpsearch.samplers.base import History, Params, Running, Sampler
from hpsearch.space import ParamValue, Space


class GridSampler(Sampler):
    needs_history = False

    def __init__(
        self,
        space: Space,
        objective: Objective,
        values: dict[str, list[ParamValue]],
        shuffle: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(space, objective)
        self.values = [values[name] for name in space]
        self.size = math.prod(len(v) for v in self.values)
        self.order: np.ndarray | None = None
        if shuffle:
            self.order = np.random.default_rng(seed).permutation(self.size)

    def capacity(self) -> int:
        return self.size

    def point(self, index: int) -> dict[str, ParamValue]:
        """The ``index``-th combination, last parameter varying fastest."""
        out: dict[str, ParamValue] = {}
        for name, values in reversed(list(zip(self.space, self.values, strict=True))):
            index, i = divmod(index, len(values))
            out[name] = values[i]
        return {name: out[name] for name in self.space}

    def propose(self, number: int, history: History, running: Running) -> Params | None:
        if number >= self.size:
            return None
        index = int(self.order[number]) if self.order is not None else number
        return self.point(index)
