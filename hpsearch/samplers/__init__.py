"""Samplers propose trials; :func:`make_sampler` builds the one a spec names.

The Optuna-backed samplers (``tpe``, ``cmaes``, ``gp``) and :class:`CoarseToFineSampler` (the
coarse-to-fine algorithm as an ``optuna.samplers.BaseSampler``) import Optuna, a server extra;
they load on first use so the core imports without it.
"""

from __future__ import annotations

import importlib.util
import zlib
from typing import TYPE_CHECKING, Any

from hpsearch.errors import InvalidInput
from hpsearch.samplers.base import FinishedTrial, Sampler
from hpsearch.samplers.coarse_to_fine import CoarseToFine, Rounds
from hpsearch.samplers.grid import GridSampler
from hpsearch.samplers.qmc import QmcSampler
from hpsearch.samplers.random import RandomSampler
from hpsearch.spec import (
    CoarseToFineSamplerSpec,
    GridSamplerSpec,
    QmcSamplerSpec,
    RandomSamplerSpec,
    StudySpec,
    grid_values,
)

if TYPE_CHECKING:
    from hpsearch.samplers.optuna_coarse_to_fine import CoarseToFineSampler

__all__ = [
    "CoarseToFine",
    "CoarseToFineSampler",
    "FinishedTrial",
    "GridSampler",
    "QmcSampler",
    "RandomSampler",
    "Sampler",
    "make_sampler",
]


def make_sampler(spec: StudySpec) -> Sampler:
    """The study's sampler; raises :class:`hpsearch.errors.InvalidInput` naming
    ``sampler.kind`` when a package it needs is not installed.

    With ``sampler.pack`` > 1 the architecture is drawn once per group of that many trials
    (:class:`hpsearch.packing.GroupedSampler`), so packing workers find partners.
    """
    sampler = _base_sampler(spec)
    cfg = spec.sampler
    if isinstance(cfg, GridSamplerSpec) or cfg.pack == 1:
        return sampler
    from hpsearch.packing import PACK_KEYS, GroupedSampler

    # The groups must come out the same each time the server rebuilds this study's sampler.
    seed = cfg.seed if cfg.seed is not None else zlib.crc32(spec.name.encode())
    return GroupedSampler(sampler, PACK_KEYS.get(spec.task.trainer, ()), cfg.pack, seed)


def _base_sampler(spec: StudySpec) -> Sampler:
    space = spec.build_space()
    objective = spec.build_objective()
    cfg = spec.sampler
    if isinstance(cfg, RandomSamplerSpec):
        return RandomSampler(space, objective, seed=cfg.seed)
    if isinstance(cfg, GridSamplerSpec):
        return GridSampler(space, objective, grid_values(cfg, space), cfg.shuffle, cfg.seed)
    if isinstance(cfg, CoarseToFineSamplerSpec):
        return CoarseToFine(
            space,
            objective,
            Rounds(cfg.rounds, cfg.trials_per_round, cfg.top_k, cfg.margin),
            seed=cfg.seed,
        )
    if isinstance(cfg, QmcSamplerSpec):
        _require(cfg.kind, "scipy")
        return QmcSampler(space, objective, cfg.qmc_type, cfg.scramble, cfg.seed)
    _require(cfg.kind, *_NEEDS[cfg.kind])
    from hpsearch.samplers.optuna_adapter import optuna_sampler

    return optuna_sampler(space, objective, cfg)


_NEEDS = {"tpe": ("optuna",), "cmaes": ("optuna", "cmaes"), "gp": ("optuna", "scipy", "torch")}


def _require(kind: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidInput(
            "sampler.kind",
            f"sampler {kind} needs {', '.join(missing)} installed on the server "
            "(pip install 'hpsearch[server]'; gp also needs torch)",
        )


def __getattr__(name: str) -> Any:
    # CoarseToFineSampler subclasses optuna's BaseSampler: import optuna only when asked.
    if name == "CoarseToFineSampler":
        from hpsearch.samplers.optuna_coarse_to_fine import CoarseToFineSampler

        return CoarseToFineSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
