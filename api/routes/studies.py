"""Studies: create, list, read, control, delete; their trials and best trial."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from api.deps import StoreDep
from api.schemas import (
    MAX_ID,
    Created,
    EnqueueIn,
    ErrorBody,
    ExtendIn,
    HistoryIn,
    ImportedOut,
    StudyId,
    StudyOut,
    TrialDetailOut,
    TrialNumber,
    TrialOut,
)
from hpsearch.spec import StudySpec

router = APIRouter(prefix="/studies", tags=["studies"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_ERRORS)
def create_study(spec: StudySpec, store: StoreDep, response: Response) -> Created:
    # Re-validated by the core (parse_spec) so cross-field rules apply to REST and CLI alike.
    study = store.create_study(spec.model_dump(mode="json"))
    response.headers["Location"] = f"/api/v1/studies/{study.id}"
    return Created(id=study.id, url=f"/studies/{study.id}")


@router.get("")
def list_studies(
    store: StoreDep,
    state: Literal["running", "paused", "stopped", "completed", "failed"] | None = None,
) -> list[StudyOut]:
    return [StudyOut.of(v) for v in store.list_studies(state)]


@router.get("/{study_id}", responses=_ERRORS)
def get_study(study_id: StudyId, store: StoreDep) -> StudyOut:
    return StudyOut.of(store.get_study(study_id))


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def delete_study(study_id: StudyId, store: StoreDep) -> None:
    store.delete_study(study_id)


@router.post("/{study_id}/pause", responses=_ERRORS)
def pause_study(study_id: StudyId, store: StoreDep) -> StudyOut:
    """No new claims; running trials finish."""
    return StudyOut.of(store.set_study_state(study_id, "pause"))


@router.post("/{study_id}/resume", responses=_ERRORS)
def resume_study(study_id: StudyId, store: StoreDep) -> StudyOut:
    return StudyOut.of(store.set_study_state(study_id, "resume"))


@router.post("/{study_id}/stop", responses=_ERRORS)
def stop_study(study_id: StudyId, store: StoreDep) -> StudyOut:
    """Ends the study; running trials are told to stop at their next report."""
    return StudyOut.of(store.set_study_state(study_id, "stop"))


@router.get("/{study_id}/trials", responses=_ERRORS)
def list_trials(
    study_id: StudyId,
    store: StoreDep,
    order: Literal["number", "rank"] = "number",
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    state: Annotated[
        list[Literal["queued", "running", "completed", "pruned", "failed"]] | None, Query()
    ] = None,
) -> list[TrialOut]:
    rows = store.trials(study_id, order=order, offset=offset, limit=limit, states=state or ())
    return [TrialOut.of(t) for t in rows]


@router.post("/{study_id}/trials", status_code=status.HTTP_201_CREATED, responses=_ERRORS)
def enqueue_trial(study_id: StudyId, body: EnqueueIn, store: StoreDep) -> TrialOut:
    """Queues a configuration ahead of the sampler's; missing parameters are sampled. It adds
    one to max_trials unless ``add_to_budget`` is false."""
    return TrialOut.of(store.enqueue(study_id, body.params, body.add_to_budget))


@router.get("/{study_id}/trials/{number}", responses=_ERRORS)
def get_trial_by_number(study_id: StudyId, number: TrialNumber, store: StoreDep) -> TrialDetailOut:
    """A trial by its number in the study (as users name it: study 3 trial 18)."""
    return TrialDetailOut.of_view(store.trial_of_study(study_id, number))


@router.post("/{study_id}/extend", responses=_ERRORS)
def extend_study(study_id: StudyId, body: ExtendIn, store: StoreDep) -> StudyOut:
    """Adds ``n_trials`` to max_trials; a completed study runs again (refused, saying why,
    when its time limit or target value ended it)."""
    return StudyOut.of(store.extend_study(study_id, body.n_trials))


@router.post("/{study_id}/history", status_code=status.HTTP_201_CREATED, responses=_ERRORS)
def import_history(study_id: StudyId, body: HistoryIn, store: StoreDep) -> ImportedOut:
    """Adds ended trials (e.g. an Optuna study's) as history: ranked like the study's own,
    fed to its sampler, and added to its budget rather than taken from it."""
    records = [t.model_dump() for t in body.trials]
    return ImportedOut(imported=store.import_history(study_id, records))


@router.get("/{study_id}/best", responses=_ERRORS)
def best_trial(study_id: StudyId, store: StoreDep) -> TrialOut | None:
    """The best feasible trial; ``null`` while no trial meets every satisficing constraint."""
    view = store.get_study(study_id)
    return TrialOut.of(view.best) if view.best else None
