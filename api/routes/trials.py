"""Trials: read one, stop one, and the worker's side of a lease."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from fastapi import APIRouter, Request

from api.auth import act_as
from api.deps import SettingsDep, StoreDep, run_queue_work
from api.metrics import COMPLETIONS, REPORTS
from api.routes.workers import claim_for, claimed
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
from hpsearch.settings import Settings
from hpsearch.states import TrialState
from hpsearch.store import Store
from hpsearch.store.clock import utcnow
from hpsearch.store.models import Trial

router = APIRouter(prefix="/trials", tags=["trials"])
EndedT = TypeVar("EndedT", bound=EndedOut)

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
    ack = await run_queue_work(request, store.heartbeat, trial_id, body.worker_id, body.attempt)
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
        trial_id,
        body.worker_id,
        body.attempt,
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
    return await run_queue_work(request, _complete, store, settings, trial_id, body)


def _complete(store: Store, settings: Settings, trial_id: int, body: CompleteIn) -> CompleteOut:
    received = utcnow()
    steps = [(s.step, s.metrics) for s in body.steps]

    def end() -> Trial:
        return store.complete(
            trial_id, body.worker_id, body.attempt, body.metrics, body.pruned, steps
        )

    if body.claim_next is None:
        return _with_health(CompleteOut.of(_counted(end(), received)), store, body.worker_id)
    ended = False
    try:
        with store.together():
            trial = end()
            ended = True
            out = _with_health(CompleteOut.of(trial), store, body.worker_id)
            if out.worker_unhealthy is not None:
                _counted(trial, received)
                return out  # a worker that stops claiming is given nothing more
            resent = trial.finished_at is not None and trial.finished_at < received
            held = store.claimed_after(trial_id, body.worker_id) if resent else None
            out.next = (
                ClaimOut(trial=claimed(held, settings), open_studies=True)
                if held is not None
                else claim_for(store, settings, body.worker_id, body.claim_next, after=trial_id)
            )
    except Exception:
        if ended:
            # The claim failed, and with it (on SQLite) the completion: never lose that.
            _counted(end(), received)
        raise
    _counted(trial, received)
    return out


def _counted(trial: Trial, received: datetime) -> Trial:
    """Counts a trial's end in the metrics, unless it had ended before ``received`` (a
    resend, answered with the trial as it ended)."""
    if trial.finished_at is None or trial.finished_at >= received:
        COMPLETIONS.labels(trial.state).inc()
    return trial


@router.post("/{trial_id}/fail", responses=_ERRORS, tags=["workers"])
def fail_trial(trial_id: TrialId, body: FailIn, request: Request, store: StoreDep) -> EndedOut:
    act_as(request, body.worker_id)
    received = utcnow()
    trial = store.fail(trial_id, body.worker_id, body.attempt, body.error)
    return _with_health(EndedOut.of(_counted(trial, received)), store, body.worker_id)


def _with_health(out: EndedT, store: Store, worker_id: str) -> EndedT:
    """A failed trial may have made its worker unhealthy: say so in the reply."""
    if out.state == TrialState.FAILED:
        out.worker_unhealthy = store.worker_unhealthy(worker_id)
    return out


@router.post("/{trial_id}/release", responses=_ERRORS, tags=["workers"])
def release_trial(
    trial_id: TrialId, body: ReleaseIn, request: Request, store: StoreDep
) -> TrialOut:
    act_as(request, body.worker_id)
    return TrialOut.of(store.release(trial_id, body.worker_id, body.attempt, body.reason))
