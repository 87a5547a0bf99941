"""Optuna's model-based samplers (``tpe``, ``cmaes``, ``gp``) behind the study sampler interface.

Each study sampler keeps a private in-memory Optuna study and feeds it incrementally: a proposal
adds only the trials that finished since the last one, so a study with 10 000 finished trials is
not reloaded into Optuna per claim (the model itself is refit as the Optuna sampler does).

Scales: a float parameter is handed to Optuna as ``FloatDistribution(0, 1)`` over its own unit
scale (:meth:`Param.to_unit`), so log and reverse_log (which Optuna lacks) are modelled on the
axis that matters; an integer as Optuna's ``IntDistribution`` (log where its scale is), so a
model knows 3.2 and 3.4 are one trial; a categorical as the index of its choice.

Feasibility: where the Optuna sampler reads constraints (TPE, GP) each finished trial carries its
total violation as one constraint value (``0`` when feasible). CMA-ES has no notion of
constraints, so it sees an infeasible trial with the worst value finished so far.

Parallel workers: trials that are running (proposed here, or by another server process, or
enqueued by a user) sit in the Optuna study as RUNNING, which TPE's constant liar and GP's
batch acquisition steer away from; a proposal equal to a running trial's params (possible in a
small discrete space) is replaced by an untried random point.

Determinism: a proposal reseeds the Optuna sampler from ``(seed, trial number)``, so a seeded
study replays the same proposals for the same sequence of finished trials.

State: the private study lives as long as the server caches this sampler. A restarted server
feeds a new one the whole history once; TPE and GP then carry on as before, while CMA-ES, whose
search distribution lives in its own trials' records, begins a new run.

This module imports Optuna; :func:`hpsearch.samplers.make_sampler` loads it only when asked.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from hpsearch.objective import Objective
from hpsearch.samplers.base import FinishedTrial, History, Params, Running, Sampler
from hpsearch.samplers.random import trial_rng
from hpsearch.space import CategoricalParam, IntParam, Param, ParamValue, Space, SpaceError
from hpsearch.spec import CmaesSamplerSpec, GpSamplerSpec, TpeSamplerSpec
from hpsearch.states import TrialState as States

SamplerFactory = Callable[[int | None], optuna.samplers.BaseSampler]
"""Builds the Optuna sampler for one proposal from its seed."""

# A violation Optuna can hold (an unmeasured satisficing metric is infinitely violated).
_MAX_VIOLATION = 1e300
# How many random points are tried instead of a model's proposal that equals a running trial's.
_REDRAWS = 100


def optuna_sampler(
    space: Space, objective: Objective, cfg: TpeSamplerSpec | CmaesSamplerSpec | GpSamplerSpec
) -> OptunaSampler:
    """The study sampler for an Optuna-backed spec."""
    if isinstance(cfg, TpeSamplerSpec):
        tpe = cfg

        def make_tpe(seed: int | None) -> Any:
            return optuna.samplers.TPESampler(
                n_startup_trials=tpe.n_startup_trials,
                multivariate=tpe.multivariate,
                constant_liar=True,
                seed=seed,
            )

        return OptunaSampler(space, objective, make_tpe, seed=cfg.seed)
    if isinstance(cfg, CmaesSamplerSpec):
        cma = cfg

        def make_cmaes(seed: int | None) -> Any:
            return optuna.samplers.CmaEsSampler(
                sigma0=cma.sigma0,
                n_startup_trials=cma.n_startup_trials,
                popsize=cma.popsize,
                seed=seed,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )

        return OptunaSampler(space, objective, make_cmaes, seed=cfg.seed, reads_constraints=False)
    gp = cfg

    def make_gp(seed: int | None) -> Any:
        return optuna.samplers.GPSampler(
            n_startup_trials=gp.n_startup_trials,
            deterministic_objective=gp.deterministic_objective,
            seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )

    return OptunaSampler(space, objective, make_gp, seed=cfg.seed, one_thread=True)


def distribution_of(param: Param) -> BaseDistribution:
    """How Optuna sees a parameter: integers as integers (on a log scale where theirs is), so
    models know two nearby values are one trial; floats by their unit coordinate."""
    if isinstance(param, CategoricalParam):
        return CategoricalDistribution(tuple(range(len(param.choices))))
    if isinstance(param, IntParam) and (param.scale != "log" or param.step == 1):
        return IntDistribution(param.low, param.high, log=param.scale == "log", step=param.step)
    return FloatDistribution(0.0, 1.0)


def params_key(params: Mapping[str, Any]) -> str:
    """A stable identity for a parameter set (as stored: JSON)."""
    return json.dumps(params, sort_keys=True, default=str)


def trial_seed(seed: int | None, number: int) -> int | None:
    """The Optuna sampler's seed for trial ``number``: derived from (study seed, number)."""
    if seed is None:
        return None
    return int(np.random.default_rng([seed, number]).integers(2**31 - 1))


class OptunaSampler(Sampler):
    """Proposes through an Optuna sampler built by ``factory(seed)`` for each trial."""

    def __init__(
        self,
        space: Space,
        objective: Objective,
        factory: SamplerFactory,
        *,
        seed: int | None = None,
        reads_constraints: bool = True,
        one_thread: bool = False,
    ) -> None:
        super().__init__(space, objective)
        self.factory = factory
        self.seed = seed
        self.reads_constraints = reads_constraints
        self.one_thread = one_thread
        self.distributions = {name: distribution_of(p) for name, p in space.items()}
        self.storage = optuna.storages.InMemoryStorage()
        direction = (
            StudyDirection.MAXIMIZE
            if objective.direction == "maximize"
            else StudyDirection.MINIMIZE
        )
        quiet = logging.getLogger("optuna.storages._in_memory")
        level = quiet.level
        # Optuna announces every new study at INFO; this private one is no news to a user.
        quiet.setLevel(logging.WARNING)
        try:
            self._study_id = self.storage.create_new_study([direction], "hpsearch")
        finally:
            quiet.setLevel(level)
        self.study = optuna.Study("hpsearch", self.storage, sampler=factory(seed))
        self._ingested: set[int] = set()
        self._asked: dict[int, optuna.Trial] = {}  # proposed here, not finished yet
        self._liars: dict[str, int] = {}  # running elsewhere: params key -> Optuna number
        self._worst: float | None = None

    # -- the Sampler interface ------------------------------------------------------------

    def propose(self, number: int, history: History, running: Running) -> Params:
        stale = self._asked.pop(number, None)
        if stale is not None:
            # The claim that took this proposal was rolled back; the number is being reused.
            self.study.tell(stale, state=TrialState.FAIL)
        self.ingest(history)
        pending = self._mark_running(running)
        self.study.sampler = self.factory(trial_seed(self.seed, number))
        with self._one_thread():
            trial = self.study.ask(self.distributions)
        params = self.from_optuna(trial.params)
        if params_key(params) in pending:
            # In a small discrete space the model may insist on a point a worker already runs
            # (a GP's acquisition is deterministic): hand out an untried random point instead.
            other = self._random_point(number, pending)
            if other is not None:
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(self.to_optuna(other), skip_if_exists=False)
                trial = self.study.ask(self.distributions)
                params = self.from_optuna(trial.params)
        self._asked[number] = trial
        return params

    @contextmanager
    def _one_thread(self) -> Iterator[None]:
        """Runs a torch-based model (GP) on one thread: fitting a few hundred points is
        latency-bound, where torch's thread pool only adds waits (see docs/performance.md)."""
        if not self.one_thread:
            yield
            return
        torch: Any = importlib.import_module("torch")  # loaded by Optuna's GP anyway
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _random_point(self, number: int, pending: set[str]) -> dict[str, ParamValue] | None:
        rng = trial_rng(self.seed, number)
        for _ in range(_REDRAWS):
            params = self.space.from_unit({name: float(rng.random()) for name in self.space})
            if params_key(params) not in pending:
                return params
        return None

    # -- feeding the private study --------------------------------------------------------

    def ingest(self, history: Sequence[FinishedTrial]) -> None:
        """Adds the trials that finished since the last call (only those)."""
        for t in history:
            if t.number in self._ingested:
                continue
            self._ingested.add(t.number)
            try:
                internal = self.to_optuna(t.params)
            except (SpaceError, KeyError, ValueError):
                continue  # a trial from an older space: nothing to learn from it here
            state, value, intermediate = self._outcome(t)
            constraints = self._constraints(t, state)
            asked = self._asked.pop(t.number, None)
            if asked is not None:
                if params_key(self.from_optuna(asked.params)) == params_key(t.params):
                    self._finish(asked, state, value, intermediate, constraints)
                    continue
                # Another server process took this number after our claim was rolled back.
                self.study.tell(asked, state=TrialState.FAIL)
            self.study.add_trial(
                create_trial(
                    state=state,
                    value=value,
                    params=internal,
                    distributions=self.distributions,
                    intermediate_values=intermediate,
                    constraints=constraints,
                )
            )

    def _outcome(self, t: FinishedTrial) -> tuple[TrialState, float | None, dict[int, float]]:
        if t.state == States.PRUNED and t.intermediate:
            # TPE ranks pruned trials by their last step, then by the value there.
            return TrialState.PRUNED, None, dict(t.intermediate)
        if t.state == States.FAILED or t.value is None or not math.isfinite(t.value):
            return TrialState.FAIL, None, {}
        if t.state == States.PRUNED:
            return TrialState.PRUNED, None, {0: t.value}  # imported without its steps
        value = t.value
        if self._worst is None or self.objective.better(self._worst, value):
            self._worst = value
        if not t.feasible and not self.reads_constraints and self.objective.constraints:
            value = self._worst
        return TrialState.COMPLETE, value, {}

    def _constraints(self, t: FinishedTrial, state: TrialState) -> dict[str, float] | None:
        if not (self.reads_constraints and self.objective.constraints):
            return None
        if state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return None
        return {"violation": 0.0 if t.feasible else min(t.violation, _MAX_VIOLATION)}

    def _finish(
        self,
        trial: optuna.Trial,
        state: TrialState,
        value: float | None,
        intermediate: dict[int, float],
        constraints: dict[str, float] | None,
    ) -> None:
        for key, violation in (constraints or {}).items():
            trial.set_constraint(key, violation)
        for step, v in intermediate.items():
            trial.report(v, step)
        if state == TrialState.COMPLETE:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=state)

    def _mark_running(self, running: Sequence[dict[str, ParamValue]]) -> set[str]:
        """Puts running trials in the study as RUNNING; returns every pending params key."""
        mine = {params_key(self.from_optuna(t.params)) for t in self._asked.values()}
        now = {params_key(p): p for p in running}
        for key in [k for k in self._liars if k not in now]:
            # It finished (its result arrives through the history) or went back to the queue.
            self.study.tell(self._liars.pop(key), state=TrialState.FAIL)
        for key, params in now.items():
            if key in mine or key in self._liars:
                continue
            try:
                internal = self.to_optuna(params)
            except (SpaceError, KeyError, ValueError):
                continue
            self.study.add_trial(
                create_trial(
                    state=TrialState.RUNNING, params=internal, distributions=self.distributions
                )
            )
            self._liars[key] = self.storage.get_n_trials(self._study_id) - 1
        return mine | set(now)

    # -- representations ------------------------------------------------------------------

    def to_optuna(self, params: Mapping[str, ParamValue]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, p in self.space.items():
            value = params[name]
            if isinstance(p, CategoricalParam):
                out[name] = p.index(value)
            elif isinstance(self.distributions[name], IntDistribution):
                if not p.contains(value):
                    raise SpaceError(f"{name}: {value!r} is outside the space")
                out[name] = int(value)
            else:
                out[name] = p.to_unit(value)
        return out

    def from_optuna(self, internal: Mapping[str, Any]) -> dict[str, ParamValue]:
        out: dict[str, ParamValue] = {}
        for name, p in self.space.items():
            value = internal[name]
            if isinstance(p, CategoricalParam):
                out[name] = p.choices[int(value)]
            elif isinstance(self.distributions[name], IntDistribution):
                out[name] = int(value)
            else:
                out[name] = p.from_unit(float(value))
        return out
