"""What trials printed: the worker appends each attempt's output, anyone who may read results
reads it (``hpsearch logs``, the trial page's live tail)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.auth import ARTIFACTS, act_as, holder_or_reader
from api.deps import ArtifactsDep, StoreDep
from api.schemas import MAX_ID, ErrorBody, LogAppendIn, LogAppendOut, LogOut, TrialId

router = APIRouter(prefix="/trials", tags=["trials"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.post("/{trial_id}/logs", responses=_ERRORS, tags=["workers"])
async def append_log(
    trial_id: TrialId,
    body: LogAppendIn,
    request: Request,
    store: StoreDep,
    artifacts: ArtifactsDep,
) -> LogAppendOut:
    """Appends a piece of the attempt's output that starts at ``offset`` (a piece resent after
    a lost reply is not appended twice). 409 when the worker does not hold the lease."""
    act_as(request, body.worker_id)
    await run_in_threadpool(store.heartbeat, body.holder(trial_id))
    append = artifacts.append_log
    size = await run_in_threadpool(append, trial_id, body.attempt, body.offset, body.text)
    return LogAppendOut(next_offset=size)


@router.get(
    "/{trial_id}/logs",
    responses=_ERRORS,
    tags=[ARTIFACTS],
    dependencies=[Depends(holder_or_reader)],
)
def read_log(
    trial_id: TrialId,
    store: StoreDep,
    artifacts: ArtifactsDep,
    attempt: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="the attempt to read (default: the latest); a "
            "worker reads only the attempt it holds",
        ),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, description="continue from a previous reply's `next_offset`")
    ] = 0,
) -> LogOut:
    """The attempt's stdout and stderr (the last MiB of each attempt is kept), from
    ``offset`` on; ``truncated`` when the part asked for was dropped."""
    state = store.trial_state(trial_id)  # 404 for an unknown trial
    chunk = artifacts.read_log(trial_id, attempt, offset)
    return LogOut(
        trial_id=trial_id,
        state=state,
        attempt=chunk.attempt,
        attempts=chunk.attempts,
        offset=chunk.offset,
        next_offset=chunk.next_offset,
        truncated=chunk.truncated,
        text=chunk.text,
    )
