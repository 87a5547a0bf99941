"""The ``sampler`` section: one spec per sampler kind, and what a grid visits."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from hpsearch.space import ParamValue, Space
from hpsearch.spec.base import Choice, Seed, Strict
from hpsearch.spec.errors import FieldError


class PackableSampler(Strict):
    # Sample the architecture (hyperparameters that shape the network) once per group of
    # `pack` consecutive trials, so `hpsearch worker --pack K` finds partners to train as one
    # packed model. The other parameters stay the sampler's own. See docs/packing.md.
    pack: int = Field(default=1, ge=1, le=1024)


class RandomSamplerSpec(PackableSampler):
    kind: Literal["random"]
    seed: Seed | None = None


class GridSamplerSpec(Strict):
    """All combinations: ``values`` per parameter where given, else ``n`` points on its scale."""

    kind: Literal["grid"]
    n: int = Field(default=5, ge=1, le=1000)
    values: dict[str, list[Choice]] = Field(default_factory=dict)
    shuffle: bool = False
    seed: Seed | None = None


class CoarseToFineSamplerSpec(PackableSampler):
    """Random rounds that zoom in: see :mod:`hpsearch.samplers.coarse_to_fine` for the keys."""

    kind: Literal["coarse_to_fine"]
    rounds: int = Field(default=3, ge=1, le=1000)
    trials_per_round: int = Field(default=20, ge=1, le=1_000_000)
    # None (the default): adapted to the space's dimension and each round's spread.
    top_k: int | None = Field(default=None, ge=1, le=1_000_000)
    margin: float = Field(default=0.1, ge=0, le=10)
    seed: Seed | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k_fits_a_round(cls, v: int | None, info: Any) -> int | None:
        per_round = info.data.get("trials_per_round")
        if v is not None and per_round is not None and v > per_round:
            raise ValueError(f"must be <= trials_per_round ({per_round}), got {v}")
        return v


class TpeSamplerSpec(PackableSampler):
    """Optuna's TPE; running trials count as bad (constant liar) so workers get distinct ones."""

    kind: Literal["tpe"]
    n_startup_trials: int = Field(default=10, ge=0, le=1_000_000)
    multivariate: bool = True
    seed: Seed | None = None


class QmcSamplerSpec(PackableSampler):
    """A scrambled Sobol or Halton sequence over the unit cube, trial ``n`` taking point ``n``."""

    kind: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True
    seed: Seed | None = None


class CmaesSamplerSpec(PackableSampler):
    """Optuna's CMA-ES (categoricals are sampled at random; it has no notion of constraints)."""

    kind: Literal["cmaes"]
    n_startup_trials: int = Field(default=1, ge=0, le=1_000_000)
    sigma0: float | None = Field(default=None, gt=0, le=1)
    popsize: int | None = Field(default=None, ge=2, le=100_000)
    seed: Seed | None = None


class GpSamplerSpec(PackableSampler):
    """Optuna's Gaussian-process sampler (needs torch and scipy on the server)."""

    kind: Literal["gp"]
    n_startup_trials: int = Field(default=10, ge=0, le=1_000_000)
    deterministic_objective: bool = False
    seed: Seed | None = None


SamplerSpec = Annotated[
    RandomSamplerSpec
    | GridSamplerSpec
    | CoarseToFineSamplerSpec
    | TpeSamplerSpec
    | QmcSamplerSpec
    | CmaesSamplerSpec
    | GpSamplerSpec,
    Field(discriminator="kind"),
]


def grid_values(spec: GridSamplerSpec, space: Space) -> dict[str, list[ParamValue]]:
    """The values a grid takes for each parameter, in space order."""
    out: dict[str, list[ParamValue]] = {}
    for name, p in space.items():
        given = spec.values.get(name)
        out[name] = list(given) if given is not None else p.grid(spec.n)
    return out


MAX_SHUFFLED_GRID = 1_000_000
"""A shuffled grid holds its whole visiting order in memory (8 bytes a combination)."""


def shuffled_grid_errors(sampler: GridSamplerSpec, space: Space) -> list[FieldError]:
    size = math.prod(len(v) for v in grid_values(sampler, space).values())
    if size <= MAX_SHUFFLED_GRID:
        return []
    return [
        FieldError(
            ("sampler", "shuffle"),
            f"a shuffled grid holds at most {MAX_SHUFFLED_GRID:,} combinations, this one "
            f"{size:,}: use fewer values (sampler.n, sampler.values), or no shuffle",
        )
    ]
