"""Workers: claim a trial; list who is working."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import act_as
from api.deps import SettingsDep, StoreDep, run_queue_work
from api.metrics import count_claims
from api.schemas import ClaimIn, ClaimOut, ErrorBody, WorkerExitIn, WorkerOut
from hpsearch.errors import NotFound
from hpsearch.store import worker_requests

router = APIRouter(tags=["workers"])


@router.post("/claims")
async def claim(
    body: ClaimIn, request: Request, store: StoreDep, settings: SettingsDep
) -> ClaimOut:
    """Leases the next trial to the worker, or says there is none (and whether to wait).

    A requested final test evaluation comes first (``kind: evaluate_test``): it is short, and
    someone is waiting for it."""
    act_as(request, body.worker_id)
    claimed = await run_queue_work(
        request, worker_requests.claim, store, body.worker_id, body.where(), None, body.request_id
    )
    count_claims(claimed)
    return ClaimOut.of(claimed, settings.report_interval_s)


@router.post("/workers/exit", status_code=204, responses={404: {"model": ErrorBody}})
def worker_exit(body: WorkerExitIn, request: Request, store: StoreDep) -> None:
    """The worker is leaving (out of work, told to stop, or on a signal), so the workers page
    says "exited" rather than calling it lost once it goes quiet. 404 for a worker never seen."""
    act_as(request, body.worker_id)
    if not store.worker_exited(body.worker_id):
        raise NotFound(f"worker {body.worker_id!r} not found")


@router.get("/workers")
def list_workers(store: StoreDep) -> list[WorkerOut]:
    return [WorkerOut.of(w) for w in store.workers()]
