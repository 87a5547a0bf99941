"""Checkpoints of trials in the artifact store, and forks that start from them ("Panda").

A worker uploads its trial's checkpoint with ``PUT`` (only the holder of the lease may); a
worker that resumes the trial, or runs a fork of it, downloads it with ``GET`` as the holder
of that lease (``worker_id`` and ``attempt`` in the query); so may a role that reads results.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import ARTIFACTS, act_as, holder_or_reader
from api.deps import ArtifactsDep, StoreDep
from api.schemas import MAX_ID, CheckpointOut, ErrorBody, ForkIn, TrialId, TrialOut
from hpsearch.artifact_store import ArtifactStore
from hpsearch.artifacts import CheckpointInfo
from hpsearch.errors import InvalidState, NotFound
from hpsearch.store import Holder, Store

router = APIRouter(prefix="/trials", tags=["trials"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
}
_BYTES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint's bytes"}
}


@router.put(
    "/{trial_id}/checkpoint",
    responses=_ERRORS,
    tags=["workers"],
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_checkpoint(
    trial_id: TrialId,
    request: Request,
    store: StoreDep,
    artifacts: ArtifactsDep,
    worker_id: Annotated[str, Query(min_length=1, max_length=200)],
    attempt: Annotated[int, Query(ge=1, le=MAX_ID)],
    step: Annotated[int, Query(ge=1, le=10_000_000, description="the last epoch trained")],
) -> CheckpointOut:
    """The body is the checkpoint's bytes (at most the server's HPSEARCH_MAX_ARTIFACT_BYTES).
    409 when the worker does not hold the trial's lease; it replaces the previous checkpoint."""
    act_as(request, worker_id)
    holder = Holder(trial_id, worker_id, attempt)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        artifacts.check_size(int(declared))
    # A worker that lost its lease is refused before its bytes are read...
    await run_in_threadpool(store.heartbeat, holder)
    # On threads: the database backend writes a chunk row every few megabytes.
    with await run_in_threadpool(artifacts.upload, trial_id) as upload:
        async for chunk in request.stream():
            await run_in_threadpool(upload.write, chunk)
        published: list[CheckpointInfo] = []

        def publish(fresh: bool) -> None:
            published.append(upload.commit(step, attempt, fresh=fresh))

        # ...and checked again, in the transaction that publishes the file: the lease may
        # have expired while the bytes were arriving.
        record = store.record_checkpoint
        await run_in_threadpool(record, holder, step, publish)
    return _out(published[0])


@router.get(
    "/{trial_id}/checkpoint",
    responses={**_ERRORS, **_BYTES},
    response_class=FileResponse,
    tags=[ARTIFACTS],
    dependencies=[Depends(holder_or_reader)],
)
def download_checkpoint(trial_id: TrialId, store: StoreDep, artifacts: ArtifactsDep) -> Response:
    """The trial's latest checkpoint; headers X-Checkpoint-Step and -Attempt describe it.

    A role that reads results may download it; a worker token only as the holder of the
    trial's lease, or of its final test evaluation's (``worker_id`` and ``attempt``)."""
    info = _latest(trial_id, store, artifacts)
    headers = {"X-Checkpoint-Step": str(info.step), "X-Checkpoint-Attempt": str(info.attempt)}
    name = f"trial-{trial_id}-step-{info.step}.ckpt"
    if info.path is not None:  # a file: sent as one, by the kernel
        return FileResponse(
            info.path, media_type="application/octet-stream", filename=name, headers=headers
        )
    headers["Content-Length"] = str(info.size)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return StreamingResponse(
        artifacts.chunks(info), media_type="application/octet-stream", headers=headers
    )


@router.get(
    "/{trial_id}/checkpoint/info",
    responses=_ERRORS,
    tags=[ARTIFACTS],
    dependencies=[Depends(holder_or_reader)],
)
def checkpoint_info(trial_id: TrialId, store: StoreDep, artifacts: ArtifactsDep) -> CheckpointOut:
    return _out(_latest(trial_id, store, artifacts))


@router.post("/{trial_id}/fork", status_code=status.HTTP_201_CREATED, responses=_ERRORS)
def fork_trial(
    trial_id: TrialId, body: ForkIn, store: StoreDep, artifacts: ArtifactsDep, response: Response
) -> TrialOut:
    """Queues a new trial of the same study that continues this trial's training from its
    latest checkpoint, with ``params`` changed (e.g. a lower lr); the other hyperparameters
    are the parent's. Stop the trial first (POST /trials/{id}/stop) to fork it where it is."""
    source = _checkpoint(trial_id, store, artifacts)  # 404 for an unknown trial
    if source is None:
        raise InvalidState(
            f"trial {trial_id} has no checkpoint to fork from yet (one is saved every "
            "task.checkpoint_every epochs, and when a trial stops)"
        )
    trial = store.fork_trial(
        trial_id, body.params, source.step, lambda fork: artifacts.copy(source, fork.id)
    )
    response.headers["Location"] = f"/api/v1/trials/{trial.id}"
    return TrialOut.of(trial)


def _latest(trial_id: int, store: Store, artifacts: ArtifactStore) -> CheckpointInfo:
    info = _checkpoint(trial_id, store, artifacts)
    if info is None:
        raise NotFound(f"trial {trial_id} has no checkpoint")
    return info


def _checkpoint(trial_id: int, store: Store, artifacts: ArtifactStore) -> CheckpointInfo | None:
    # The database says whether the trial has one; files under a reused id are not its own.
    if store.checkpoint_step(trial_id) is None:
        return None
    return artifacts.latest(trial_id)


def _out(info: CheckpointInfo) -> CheckpointOut:
    return CheckpointOut(
        trial_id=info.trial_id,
        step=info.step,
        attempt=info.attempt,
        bytes=info.size,
        saved_at=info.saved_at,
    )
