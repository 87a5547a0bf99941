"""Workers: claim a trial; list who is working."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import act_as
from api.deps import SettingsDep, StoreDep, run_queue_work
from api.metrics import CLAIMS
from api.schemas import ClaimedTrial, ClaimIn, ClaimOut, NextClaimIn, PassedOver, WorkerOut
from hpsearch.settings import Settings
from hpsearch.store import Store
from hpsearch.store.claims import Claim
from hpsearch.store.evaluations import EvaluationClaim
from hpsearch.tasks import capabilities

router = APIRouter(tags=["workers"])


@router.post("/claims")
async def claim(
    body: ClaimIn, request: Request, store: StoreDep, settings: SettingsDep
) -> ClaimOut:
    """Leases the next trial to the worker, or says there is none (and whether to wait).

    A requested final test evaluation comes first (``kind: evaluate_test``): it is short, and
    someone is waiting for it."""
    act_as(request, body.worker_id)
    return await run_queue_work(
        request, claim_for, store, settings, body.worker_id, body, None, body.request_id
    )


def claim_for(
    store: Store,
    settings: Settings,
    worker_id: str,
    where: NextClaimIn,
    after: int | None = None,
    request_id: str | None = None,
) -> ClaimOut:
    """A claim, as ``POST /claims`` (with its idempotency key ``request_id``, if any) and a
    completion's ``claim_next`` (``after`` the trial it completed) make it."""
    study_id = where.study_id
    if request_id is not None:
        # A resend (its reply was lost): the lease it was given, if the worker still holds it.
        held = store.claimed_by_request(worker_id, request_id)
        if held is not None:
            return ClaimOut(trial=claimed(held, settings), open_studies=True)
    job = store.claim_final_evaluation(worker_id, study_id)
    if job is not None:
        CLAIMS.labels("evaluation").inc()
        return ClaimOut(trial=claimed(job, settings), open_studies=True)
    worker = capabilities(
        where.devices, where.labels, where.entry_points, where.refused_studies, where.commands
    )
    c = store.claim(
        worker_id,
        where.host,
        where.devices,
        study_id,
        after,
        where.entry_points,
        where.commands,
        request_id,
        labels=where.labels,
        refused_studies=where.refused_studies,
    )
    if c is None:
        open_studies = store.has_open_studies(study_id) or store.has_pending_final_evaluation(
            study_id
        )
        passed = [
            PassedOver(study_id=sid, needs=needs, entry_point=entry_point, command=command)
            for sid, needs, entry_point, command in store.passed_over(worker, study_id)
        ]
        skipped = {p.study_id for p in passed}
        waiting = [f"study {p.study_id} needs a worker with {p.needs}" for p in passed] + [
            why for sid, why in store.waiting(study_id) if sid not in skipped
        ]
        CLAIMS.labels("none").inc()
        return ClaimOut(trial=None, open_studies=open_studies, passed_over=passed, waiting=waiting)
    CLAIMS.labels("trial").inc()
    return ClaimOut(trial=claimed(c, settings), open_studies=True)


def claimed(c: Claim | EvaluationClaim, settings: Settings) -> ClaimedTrial:
    """What a worker is told of the trial, or the final test evaluation, it was given."""
    if isinstance(c, EvaluationClaim):
        kind, resume_step, interval = "evaluate_test", c.last_step, 0.0
    else:
        kind, resume_step = "train", c.resume_step
        interval = 0.0 if c.judges_each_step else settings.report_interval_s
    return ClaimedTrial(
        id=c.trial_id,
        trial_id=c.trial_id,
        study_id=c.study_id,
        number=c.number,
        attempt=c.attempt,
        params=c.params,
        task=c.task,
        lease_expires_at=c.lease_expires_at,
        resume_step=resume_step,
        kind=kind,
        report_interval_s=interval,
    )


@router.get("/workers")
def list_workers(store: StoreDep) -> list[WorkerOut]:
    return [WorkerOut.of(w) for w in store.workers()]
