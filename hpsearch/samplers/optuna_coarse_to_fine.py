"""Coarse to fine for plain Optuna users: ``hpsearch.samplers.CoarseToFineSampler``.

The same algorithm as the ``coarse_to_fine`` study sampler (:mod:`hpsearch.samplers.coarse_to_fine`
documents it and its keys), as an :class:`optuna.samplers.BaseSampler`::

    sampler = CoarseToFineSampler(rounds=3, trials_per_round=20, seed=0)  # top_k adapts
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=100)

Optuna's distributions map onto hpsearch parameters (``log=True`` is the log scale; Optuna has
no reverse_log), so intervals shrink in the same unit scale. Feasibility follows Optuna's
convention: a trial's constraint values (``trial.set_constraint`` or a ``constraints_func``
evaluated after each trial) are feasible when all are ``<= 0``, and their positive parts add up to
its violation. Parameters are sampled independently, so define-by-run spaces work; a parameter
takes only the top trials that sampled it from the same distribution.

This module imports Optuna; :mod:`hpsearch.samplers` loads it only when it is asked for.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers._base import _process_constraints_after_trial
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpsearch.objective import Direction, rank
from hpsearch.samplers.base import FinishedTrial
from hpsearch.samplers.coarse_to_fine import (
    ParamRegion,
    Rounds,
    full_region,
    next_region,
    ranked_candidates,
    sample_param,
    top_trials,
)
from hpsearch.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    ParamValue,
    Scale,
    Space,
)
from hpsearch.states import TrialState as States

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


def param_of(name: str, distribution: BaseDistribution) -> Param:
    """The hpsearch parameter an Optuna distribution describes (its scale included)."""
    if isinstance(distribution, FloatDistribution | IntDistribution):
        scale: Scale = "log" if distribution.log else "linear"
        if isinstance(distribution, FloatDistribution):
            return FloatParam(name, distribution.low, distribution.high, scale, distribution.step)
        return IntParam(name, distribution.low, distribution.high, scale, distribution.step)
    if isinstance(distribution, CategoricalDistribution):
        # Optuna allows None among the choices; hpsearch's choice handling does not mind it.
        return CategoricalParam(name, cast(tuple[ParamValue, ...], tuple(distribution.choices)))
    raise ValueError(f"{name}: CoarseToFineSampler does not know {distribution!r}")


def constraint_values(trial: FrozenTrial) -> list[float] | None:
    """The trial's constraint values under Optuna's convention, or None when it has none."""
    values: dict[str, float] = trial.constraints
    return list(values.values()) if values else None


class CoarseToFineSampler(optuna.samplers.BaseSampler):
    """Random rounds that zoom into the region of the best trials, in each parameter's scale."""

    def __init__(
        self,
        *,
        rounds: int = 3,
        trials_per_round: int = 20,
        top_k: int | None = None,
        margin: float = 0.1,
        seed: int | None = None,
        constraints_func: ConstraintsFunc | None = None,
    ) -> None:
        if rounds < 1 or trials_per_round < 1 or not 1 <= (top_k or 1) <= trials_per_round:
            raise ValueError(
                "need rounds >= 1, trials_per_round >= 1 and 1 <= top_k <= trials_per_round; "
                f"got rounds={rounds}, trials_per_round={trials_per_round}, top_k={top_k}"
            )
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin}")
        self.config = Rounds(rounds, trials_per_round, top_k, margin)
        self._seed = seed
        self._constraints_func = constraints_func
        # The top trials of each round so far, per trial being sampled: every parameter of a
        # trial is sampled against the same ranking, and it is computed once.
        self._tops: dict[int, list[list[FrozenTrial]]] = {}

    # Every hook refuses a multi-objective study: one ranking decides the top trials, and it
    # needs one objective (Optuna's sampler tests expect the relative hooks to raise as well).
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self._raise_error_if_multi_objective(study)
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        return {}

    def reseed_rng(self) -> None:
        """Deliberately does nothing: each value's randomness comes from ``(seed, trial number,
        parameter name)``, so a seeded study is reproducible however Optuna's parallel workers
        (which call this after forking) interleave; without a seed every draw is fresh anyway."""

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._raise_error_if_multi_objective(study)
        param = param_of(param_name, param_distribution)
        part = self.param_region(study, trial, param_name, param_distribution)
        return sample_param(param, part, float(self._rng(trial.number, param_name).random()))

    def param_region(
        self, study: Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> ParamRegion:
        """One parameter's part of the region of ``trial``'s round."""
        space = Space([param_of(name, distribution)])
        region = full_region(space)
        tops = self._tops.get(trial._trial_id)
        if tops is None:
            tops = self._top_trials(study, self.config.round_of(trial.number))
            self._tops[trial._trial_id] = tops
        for r, top in enumerate(tops, start=1):
            points = [
                {name: t.params[name]} for t in top if t.distributions.get(name) == distribution
            ]
            region = next_region(space, region, points, self.config.margin, r)
        return region.params[name]

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._tops.pop(trial._trial_id, None)
        if self._constraints_func is not None:
            # Optuna's own convention: evaluated once, stored on the trial for every reader.
            _process_constraints_after_trial(self._constraints_func, study, trial, state)

    def _top_trials(self, study: Study, round_index: int) -> list[list[FrozenTrial]]:
        """For rounds 1 .. round_index, the top trials of the rounds before each."""
        if round_index == 0:
            return []
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        constrained = self._constraints_func is not None or any(t.constraints for t in complete)
        scored = [_scored(t, constrained) for t in complete]
        by_number = {t.number: t for t in complete}
        direction: Direction = (
            "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize"
        )
        # Define-by-run: the dimension is that of the numeric parameters the trials sampled.
        dimensions = len(
            {
                name
                for t in complete
                for name, d in t.distributions.items()
                if not isinstance(d, CategoricalDistribution)
            }
        )
        tops = []
        for r in range(1, round_index + 1):
            pool = ranked_candidates(scored, self.config.first_number(r))
            top = top_trials(rank(pool, direction), self.config, dimensions)
            tops.append([by_number[t.number] for t in top])
        return tops

    def _rng(self, number: int, name: str) -> np.random.Generator:
        if self._seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self._seed, number, zlib.crc32(name.encode())])


def _scored(trial: FrozenTrial, constrained: bool) -> FinishedTrial:
    """A completed Optuna trial as the ranking rule sees it."""
    values = constraint_values(trial)
    if values is None:
        # A constrained study's trial without constraint values was never judged.
        feasible, violation = not constrained, (math.inf if constrained else 0.0)
    else:
        violation = sum(max(v, 0.0) for v in values)
        feasible = violation == 0.0
    return FinishedTrial(
        number=trial.number,
        params=dict(trial.params),
        state=States.COMPLETED,
        value=trial.value,
        feasible=feasible,
        violation=violation,
    )
