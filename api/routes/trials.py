"""Trials: read one, stop one, and the worker's side of a lease."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import act_as
from api.deps import SettingsDep, StoreDep, run_queue_work
from api.metrics import REPORTS, count_ended
from api.schemas import (
    AckOut,
    ClaimOut,
    CompleteIn,
    CompleteOut,
    EndedOut,
    ErrorBody,
    FailIn,
    LeaseIn,
    ReleaseIn,
    ReportIn,
    TrialDetailOut,
    TrialId,
    TrialOut,
)
from hpsearch.store import worker_requests
from hpsearch.store.ending import Completion

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
async def heartbeat(trial_id: TrialId, body: LeaseIn, request: Request, store: StoreDep) -> AckOut:
    act_as(request, body.worker_id)
    ack = await run_queue_work(request, store.heartbeat, body.holder(trial_id))
    return AckOut(
        should_stop=ack.should_stop, reason=ack.reason, lease_expires_at=ack.lease_expires_at
    )


@router.post("/{trial_id}/intermediate", responses=_ERRORS, tags=["workers"])
async def report_intermediate(
    trial_id: TrialId, body: ReportIn, request: Request, store: StoreDep
) -> AckOut:
    """One step's (epoch's) metrics, after any ``earlier`` steps the worker held back.

    409 when the worker no longer holds the lease."""
    act_as(request, body.worker_id)
    earlier = [(s.step, s.metrics) for s in body.earlier]
    ack = await run_queue_work(
        request,
        store.report,
        body.holder(trial_id),
        body.step,
        body.metrics,
        earlier,
    )
    REPORTS.inc()
    return AckOut(
        should_stop=ack.should_stop, reason=ack.reason, lease_expires_at=ack.lease_expires_at
    )


@router.post("/{trial_id}/complete", responses=_ERRORS, tags=["workers"])
async def complete_trial(
    trial_id: TrialId,
    body: CompleteIn,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
) -> CompleteOut:
    """Ends the trial with its final metrics (storing first any ``steps`` held back) and,
    with ``claim_next``, claims the worker's next trial: one request per trial when epochs
    are quicker than the report interval. 409 when the worker no longer holds the lease.

    Resent (its first reply was lost), a completion changes nothing and answers with the
    trial as it ended; with ``claim_next``, with the trial the first request claimed, if the
    worker still holds it, rather than with another one."""
    act_as(request, body.worker_id)
    claim_next = body.claim_next.where() if body.claim_next is not None else None
    steps = [(s.step, s.metrics) for s in body.steps]
    c = Completion(body.holder(trial_id), body.metrics, body.pruned, steps, body.started)
    ended = await run_queue_work(request, worker_requests.complete, store, c, claim_next)
    count_ended(ended)
    out = CompleteOut.of(ended.trial)
    out.worker_unhealthy = ended.worker_unhealthy
    if ended.next is not None:
        out.next = ClaimOut.of(ended.next, settings.report_interval_s)
    return out


@router.post("/{trial_id}/fail", responses=_ERRORS, tags=["workers"])
def fail_trial(trial_id: TrialId, body: FailIn, request: Request, store: StoreDep) -> EndedOut:
    act_as(request, body.worker_id)
    ended = worker_requests.fail(store, body.holder(trial_id), body.error)
    count_ended(ended)
    out = EndedOut.of(ended.trial)
    out.worker_unhealthy = ended.worker_unhealthy
    return out


@router.post("/{trial_id}/release", responses=_ERRORS, tags=["workers"])
def release_trial(
    trial_id: TrialId, body: ReleaseIn, request: Request, store: StoreDep
) -> TrialOut:
    act_as(request, body.worker_id)
    return TrialOut.of(store.release(body.holder(trial_id), body.reason))
