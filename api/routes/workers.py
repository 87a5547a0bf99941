"""Workers: claim a trial; list who is working."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.schemas import ClaimedTrial, ClaimIn, ClaimOut, WorkerOut
from hpsearch.store.evaluations import EvaluationClaim

router = APIRouter(tags=["workers"])


@router.post("/claims")
def claim(body: ClaimIn, store: StoreDep) -> ClaimOut:
    """Leases the next trial to the worker, or says there is none (and whether to wait).

    A requested final test evaluation comes first (``kind: evaluate_test``): it is short, and
    someone is waiting for it."""
    job = store.claim_final_evaluation(body.worker_id, body.study_id)
    if job is not None:
        return ClaimOut(trial=_evaluation(job), open_studies=True)
    c = store.claim(body.worker_id, body.host, body.devices, body.study_id)
    if c is None:
        waiting = store.has_open_studies(body.study_id) or store.has_pending_final_evaluation(
            body.study_id
        )
        return ClaimOut(trial=None, open_studies=waiting)
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


def _evaluation(job: EvaluationClaim) -> ClaimedTrial:
    return ClaimedTrial(
        trial_id=job.trial_id,
        study_id=job.study_id,
        number=job.number,
        attempt=job.attempt,
        params=job.params,
        task=job.task,
        lease_expires_at=job.lease_expires_at,
        resume_step=job.last_step,
        kind="evaluate_test",
    )


@router.get("/workers")
def list_workers(store: StoreDep) -> list[WorkerOut]:
    return [WorkerOut.of(w) for w in store.workers()]
