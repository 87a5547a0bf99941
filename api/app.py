"""The FastAPI application: REST under /api/v1 and the web results view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from anyio import CapacityLimiter
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors
from api.access_log import AccessLog
from api.auth import authorize
from api.limits import BodyLimit
from api.metrics import RequestTimer
from api.routes import (
    artifacts,
    evaluations,
    export,
    health,
    login,
    logs,
    metrics,
    pbt,
    regions,
    studies,
    trials,
    web,
    workers,
)
from api.web_assets import STATIC_DIR
from hpsearch.artifact_store import copy_latest_checkpoint, open_artifacts
from hpsearch.auth import Authenticator
from hpsearch.settings import Settings
from hpsearch.store import Database, Store, check_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, echo=settings.echo_sql)
        # Refuse to serve a schema that is behind: `hpsearch db upgrade` fixes it.
        check_schema(db)
        app.state.store = Store(
            db, lease_seconds=settings.lease_seconds, probe_seconds=settings.probe_seconds
        )
        app.state.artifacts = artifact_store = open_artifacts(settings, db)
        app.state.store.copy_checkpoint = partial(copy_latest_checkpoint, artifact_store)
        app.state.auth = Authenticator(db, ttl=settings.auth_cache_seconds)
        app.state.settings = settings
        threads = settings.queue_threads
        if threads is None:
            threads = 0 if db.engine.dialect.name == "sqlite" else 2
        app.state.queue_threads = CapacityLimiter(threads) if threads > 0 else None
        yield
        db.dispose()

    app = FastAPI(
        title="hpsearch",
        version="0.1.0",
        summary="Hyperparameter search for PyTorch: studies, trials, workers.",
        lifespan=lifespan,
        # One policy for every route (api/auth.py): which role may call it.
        dependencies=[Depends(authorize)],
    )
    errors.install(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    # Outside the size limit: its refusals are timed too.
    app.add_middleware(RequestTimer)
    if settings.access_log:
        # Added last, so outermost: it sees every answer, the size limit's too.
        app.add_middleware(AccessLog)

    # Routers are matched in order, route by route: the workers' (nearly every request a
    # study makes) come first.
    routers = (
        workers,
        trials,
        logs,
        evaluations,
        artifacts,
        health,
        studies,
        regions,
        pbt,
        export,
    )
    for module in routers:
        app.include_router(module.router, prefix="/api/v1", responses=errors.EVERY_ROUTE)
    app.include_router(login.router)
    app.include_router(metrics.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
