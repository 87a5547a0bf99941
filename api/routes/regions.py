"""Coarse-to-fine regions: each round's part of the space, for the web view to draw."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from api.deps import StoreDep
from api.schemas import ErrorBody, StudyId
from hpsearch.samplers.coarse_to_fine import Region, Rounds, study_regions, study_rounds
from hpsearch.space import CategoricalParam, Param, Scale, Space
from hpsearch.store import Store
from hpsearch.store.bounded import Bounded

router = APIRouter(prefix="/studies", tags=["studies"])

Value = bool | int | float | str


class ParamRegionOut(BaseModel):
    """A numeric parameter's interval, in its unit scale and in values; or kept choices."""

    scale: Scale | None = Field(description="null for a categorical")
    unit: tuple[float, float] | None = Field(
        description="[lo, hi] of the parameter's unit interval (its own scale)"
    )
    values: tuple[Value, Value] | None = Field(description="the same interval as values")
    choices: list[Value] | None = Field(description="the choices a categorical keeps")


class RoundOut(BaseModel):
    round: int = Field(description="1-based; round 1 is the whole space")
    first_trial: int
    last_trial: int | None = Field(description="null for the last round: it runs to the end")
    based_on: list[int] = Field(description="numbers of the top trials that spanned it")
    volume: float = Field(description="product of the numeric widths in unit space")
    params: dict[str, ParamRegionOut]


class RegionsOut(BaseModel):
    study_id: int
    sampler: str
    rounds: list[RoundOut] = Field(description="empty unless the sampler is coarse_to_fine")


@router.get("/{study_id}/regions", responses={404: {"model": ErrorBody}})
def study_regions_view(request: Request, study_id: StudyId, store: StoreDep) -> RegionsOut:
    """Each begun round's region, computed from the study's finished trials."""
    view = store.get_study(study_id)
    # Regions depend only on ended trials, like the plot data: the study row changes whenever
    # one ends (and a round begins with a trial number), so a page following the study
    # reads them again only then.
    key = (study_id, view.study.updated_at, view.counts.ended, view.study.next_number)
    cache = _cache(request.app)
    found = cache.get(key)
    if found is None:
        found = _regions(store, study_id, view.study.next_number)
        cache.put(key, found)
    return found


def _cache(app: FastAPI) -> Bounded[tuple[Any, ...], RegionsOut]:
    # One per app, as the store is: the key needs no store.
    if not hasattr(app.state, "regions_cache"):
        app.state.regions_cache = Bounded(16)
    cache: Bounded[tuple[Any, ...], RegionsOut] = app.state.regions_cache
    return cache


def _regions(store: Store, study_id: int, next_number: int) -> RegionsOut:
    spec = store.spec(study_id)
    config = study_rounds(spec)
    if config is None:
        return RegionsOut(study_id=study_id, sampler=spec.sampler.kind, rounds=[])
    found = study_regions(spec, store.history(study_id), next_number)
    space = spec.build_space()
    return RegionsOut(
        study_id=study_id,
        sampler=spec.sampler.kind,
        rounds=[_round(r, space, config) for r in found],
    )


def _round(region: Region, space: Space, config: Rounds) -> RoundOut:
    first = config.first_number(region.round)
    last = region.round == config.rounds - 1
    return RoundOut(
        round=region.round + 1,
        first_trial=first,
        last_trial=None if last else first + config.trials_per_round - 1,
        based_on=list(region.based_on),
        volume=region.volume(),
        params={name: _param(p, region) for name, p in space.items()},
    )


def _param(param: Param, region: Region) -> ParamRegionOut:
    part = region.params[param.name]
    if isinstance(param, CategoricalParam):
        return ParamRegionOut(scale=None, unit=None, values=None, choices=list(part.choices or ()))
    interval = part.interval
    assert interval is not None
    return ParamRegionOut(
        scale=param.scale,
        unit=(interval.lo, interval.hi),
        values=(param.from_unit(interval.lo), param.from_unit(interval.hi)),
        choices=None,
    )
