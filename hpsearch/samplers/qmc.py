"""Quasi-Monte Carlo: a scrambled Sobol or Halton sequence over the unit cube of the space.

This is the sequence Optuna's ``QMCSampler`` draws (scipy's engines, the same seed and scramble
semantics, categoricals taking one coordinate each), with one difference that matters for a
service: trial ``n`` takes point ``n`` of the sequence, rather than the next value of a counter
kept in the Optuna study. Proposals are then a pure function of (seed, trial number): parallel
workers, user-enqueued trials and server restarts leave the sequence intact, and no history is
loaded. Points are mapped through each parameter's own scale (:meth:`Space.from_unit`).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from hpsearch.objective import Objective
from hpsearch.samplers.base import History, Params, Running, Sampler
from hpsearch.space import Space

QmcType = Literal["sobol", "halton"]


class QmcSampler(Sampler):
    needs_history = False

    def __init__(
        self,
        space: Space,
        objective: Objective,
        qmc_type: QmcType = "sobol",
        scramble: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(space, objective)
        self.qmc_type = qmc_type
        self.scramble = scramble
        # Unseeded, one scramble is still kept for the life of this object so its points stay
        # one sequence.
        self.seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self._engine: Any = None
        self._position = 0

    def propose(self, number: int, history: History, running: Running) -> Params:
        point = self.point(number)
        return self.space.from_unit(dict(zip(self.space, point.tolist(), strict=True)))

    def point(self, number: int) -> np.ndarray:
        """Point ``number`` (0-based) of the sequence, in [0, 1) ** dimensions."""
        if self._engine is None or self._position != number:
            self._engine = self._new_engine()
            if number > 0:
                self._engine.fast_forward(number)
        with warnings.catch_warnings():
            # Sobol's balance warning is about drawing n != 2**m points in one call.
            warnings.simplefilter("ignore", UserWarning)
            point: np.ndarray = self._engine.random(1)[0]
        self._position = number + 1
        return point

    def _new_engine(self) -> Any:
        from scipy.stats import qmc  # a server extra; loaded only by a qmc study

        d = len(self.space)
        if self.qmc_type == "halton":
            return qmc.Halton(d, scramble=self.scramble, rng=self.seed)
        return qmc.Sobol(d, scramble=self.scramble, rng=self.seed)
