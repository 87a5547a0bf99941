"""What handlers receive through ``Depends``: the store, the artifact store, the settings.

Asynchronous, though they never wait: FastAPI runs a plain ``def`` dependency in a thread,
a needless trip on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, Request

from hpsearch.artifact_store import ArtifactStore
from hpsearch.settings import Settings
from hpsearch.store import Store


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_artifacts(request: Request) -> ArtifactStore:
    artifacts: ArtifactStore = request.app.state.artifacts
    return artifacts


T = TypeVar("T")


async def run_queue_work(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Runs a worker request's store work on the queue's own threads, so that slow pages
    never hold up claims and reports, nor the reverse; or, with none (SQLite, by default: see
    Settings.queue_threads), on the event loop."""
    limiter: CapacityLimiter | None = request.app.state.queue_threads
    if limiter is None:
        return fn(*args)
    return await to_thread.run_sync(partial(fn, *args), limiter=limiter)


StoreDep = Annotated[Store, Depends(get_store)]


ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
