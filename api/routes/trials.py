"""Trials: read one, stop one, and the worker's side of a lease."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.schemas import (
    AckOut,
    CompleteIn,
    ErrorBody,
    FailIn,
    LeaseIn,
    ReleaseIn,
    ReportIn,
    TrialDetailOut,
    TrialId,
    TrialOut,
)

router = APIRouter(prefix="/trials", tags=["trials"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.get("/{trial_id}", responses=_ERRORS)
def get_trial(trial_id: TrialId, store: StoreDep) -> TrialDetailOut:
    return TrialDetailOut.of_view(store.trial(trial_id))


@router.post("/{trial_id}/stop", responses=_ERRORS)
def stop_trial(trial_id: TrialId, store: StoreDep) -> TrialOut:
    return TrialOut.of(store.stop_trial(trial_id))


@router.post("/{trial_id}/heartbeat", responses=_ERRORS, tags=["workers"])
def heartbeat(trial_id: TrialId, body: LeaseIn, store: StoreDep) -> AckOut:
    ack = store.heartbeat(trial_id, body.worker_id, body.attempt)
    return AckOut(
        should_stop=ack.should_stop, reason=ack.reason, lease_expires_at=ack.lease_expires_at
    )


@router.post("/{trial_id}/intermediate", responses=_ERRORS, tags=["workers"])
def report_intermediate(trial_id: TrialId, body: ReportIn, store: StoreDep) -> AckOut:
    """One step's (epoch's) metrics. 409 when the worker no longer holds the lease."""
    ack = store.report(trial_id, body.worker_id, body.attempt, body.step, body.metrics)
    return AckOut(
        should_stop=ack.should_stop, reason=ack.reason, lease_expires_at=ack.lease_expires_at
    )


@router.post("/{trial_id}/complete", responses=_ERRORS, tags=["workers"])
def complete_trial(trial_id: TrialId, body: CompleteIn, store: StoreDep) -> TrialOut:
    return TrialOut.of(
        store.complete(trial_id, body.worker_id, body.attempt, body.metrics, body.pruned)
    )


@router.post("/{trial_id}/fail", responses=_ERRORS, tags=["workers"])
def fail_trial(trial_id: TrialId, body: FailIn, store: StoreDep) -> TrialOut:
    return TrialOut.of(store.fail(trial_id, body.worker_id, body.attempt, body.error))


@router.post("/{trial_id}/release", responses=_ERRORS, tags=["workers"])
def release_trial(trial_id: TrialId, body: ReleaseIn, store: StoreDep) -> TrialOut:
    return TrialOut.of(store.release(trial_id, body.worker_id, body.attempt, body.reason))
