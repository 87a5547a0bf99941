"""Samplers propose trials; :func:`make_sampler` builds the one a spec names."""

from __future__ import annotations

from hpsearch.samplers.base import FinishedTrial, Sampler
from hpsearch.samplers.grid import GridSampler
from hpsearch.samplers.random import RandomSampler
from hpsearch.spec import GridSamplerSpec, RandomSamplerSpec, StudySpec, grid_values

__all__ = ["FinishedTrial", "GridSampler", "RandomSampler", "Sampler", "make_sampler"]


def make_sampler(spec: StudySpec) -> Sampler:
    space = spec.build_space()
    objective = spec.build_objective()
    cfg = spec.sampler
    if isinstance(cfg, RandomSamplerSpec):
        return RandomSampler(space, objective, seed=cfg.seed)
    if isinstance(cfg, GridSamplerSpec):
        return GridSampler(space, objective, grid_values(cfg, space), cfg.shuffle, cfg.seed)
    raise AssertionError(f"unhandled sampler {cfg!r}")
