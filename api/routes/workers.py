"""Workers: claim a trial; list who is working."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.schemas import ClaimedTrial, ClaimIn, ClaimOut, WorkerOut

router = APIRouter(tags=["workers"])


@router.post("/claims")
def claim(body: ClaimIn, store: StoreDep) -> ClaimOut:
    """Leases the next trial to the worker, or says there is none (and whether to wait)."""
    c = store.claim(body.worker_id, body.host, body.devices, body.study_id)
    if c is None:
        return ClaimOut(trial=None, open_studies=store.has_open_studies(body.study_id))
    trial = ClaimedTrial(
        trial_id=c.trial_id,
        study_id=c.study_id,
        number=c.number,
        attempt=c.attempt,
        params=c.params,
        task=c.task,
        lease_expires_at=c.lease_expires_at,
        resume_step=c.resume_step,
    )
    return ClaimOut(trial=trial, open_studies=True)


@router.get("/workers")
def list_workers(store: StoreDep) -> list[WorkerOut]:
    return [WorkerOut.of(w) for w in store.workers()]
