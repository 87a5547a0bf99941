"""Population-based training: each study's lineage tree and each trial's schedule (the
hyperparameters its model trained with over time), for the web view and for replaying."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from api.deps import StoreDep
from api.schemas import ErrorBody, StudyId, TrialId, TrialOut

router = APIRouter(tags=["pbt"])

Value = bool | int | float | str | None
_ERRORS: dict[int | str, dict[str, object]] = {404: {"model": ErrorBody}}
_REPLAY_ERRORS: dict[int | str, dict[str, object]] = {**_ERRORS, 409: {"model": ErrorBody}}


class SegmentOut(BaseModel):
    first_epoch: int
    last_epoch: int | None = Field(description="null while the trial is still training")
    trial_id: int = Field(description="the trial of the lineage that trained these epochs")
    number: int
    params: dict[str, Value]


class ScheduleOut(BaseModel):
    trial_id: int
    segments: list[SegmentOut] = Field(
        description="oldest first; replay epoch e with the params of the last segment whose "
        "first_epoch <= e"
    )


class LinkOut(BaseModel):
    trial_id: int
    number: int
    parent_trial_id: int | None = Field(description="the trial whose checkpoint it copied")
    step: int | None = Field(description="the epoch of that checkpoint")
    last_step: int | None = Field(description="the last epoch it reported")


class LineageOut(BaseModel):
    study_id: int
    trials: list[LinkOut]


@router.get("/trials/{trial_id}/schedule", responses=_ERRORS)
def trial_schedule(trial_id: TrialId, store: StoreDep) -> ScheduleOut:
    """The hyperparameters the trial's model was trained with, epoch range by range: its PBT
    ancestors' up to the epoch each was copied, then its own."""
    segments = [
        SegmentOut(
            first_epoch=s.first,
            last_epoch=s.last,
            trial_id=s.trial_id,
            number=s.number,
            params=s.params,
        )
        for s in store.schedule(trial_id)
    ]
    return ScheduleOut(trial_id=trial_id, segments=segments)


@router.post(
    "/trials/{trial_id}/replay", status_code=status.HTTP_201_CREATED, responses=_REPLAY_ERRORS
)
def replay_trial(trial_id: TrialId, store: StoreDep, response: Response) -> TrialOut:
    """Queues a new trial that trains this (ended) trial's schedule from scratch: the
    hyperparameters of each stretch of ``GET /trials/{id}/schedule``, changed at the epochs
    recorded there (the worker resumes from the new trial's own checkpoint at each change).
    It runs next and adds one to the study's budget; 409 while the trial still trains."""
    trial = store.replay_trial(trial_id)
    response.headers["Location"] = f"/api/v1/trials/{trial.id}"
    return TrialOut.of(trial)


@router.get("/studies/{study_id}/lineage", responses=_ERRORS)
def study_lineage(study_id: StudyId, store: StoreDep) -> LineageOut:
    """Every trial of the study with the trial it copied at a PBT exploit, and when."""
    links = sorted(store.lineage(study_id).values(), key=lambda link: link.number)
    return LineageOut(
        study_id=study_id,
        trials=[
            LinkOut(
                trial_id=link.trial_id,
                number=link.number,
                parent_trial_id=link.parent_id,
                step=link.step,
                last_step=link.last_step,
            )
            for link in links
        ],
    )
