"""Random search on each parameter's own scale."""

from __future__ import annotations

import numpy as np

from hpsearch.objective import Objective
from hpsearch.samplers.base import History, Params, Running, Sampler
from hpsearch.space import Space


def trial_rng(seed: int | None, number: int) -> np.random.Generator:
    """A generator for one trial: seeded by (study seed, trial number) when a seed is given.

    Seeding per trial rather than per study keeps a seeded study reproducible however the
    claims of parallel workers interleave.
    """
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, number])


class RandomSampler(Sampler):
    needs_history = False

    def __init__(self, space: Space, objective: Objective, seed: int | None = None) -> None:
        super().__init__(space, objective)
        self.seed = seed

    def propose(self, number: int, history: History, running: Running) -> Params:
        rng = trial_rng(self.seed, number)
        return self.space.from_unit({name: float(rng.random()) for name in self.space})
