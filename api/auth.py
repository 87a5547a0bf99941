"""Who may call what: one policy for every route, applied as an app-wide dependency.

Authentication is on as soon as one token exists (``hpsearch token create``). Requests carry
``Authorization: Bearer <token>``; browsers log in once at ``/login`` and then carry the token
in an HttpOnly, SameSite=Strict cookie. The permission a route needs follows from the route:
worker endpoints need ``work``; other reads need ``read``; other writes need ``submit``;
``/api/v1/tokens`` needs ``admin``. Reads of a trial's artifacts (tag ``artifacts``) need
``read``, or ``work`` as the trial's lease holder (:func:`holder_or_reader`).

Two rules need the request's body or query, so the handlers apply them, through the
functions here: a worker token bound to worker ids acts only under those (:func:`act_as`,
on every route that names a ``worker_id``), and a worker reads a trial's artifacts only while
it holds the trial's lease (:func:`holder_or_reader`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from api.deps import StoreDep
from api.schemas import MAX_ID, TrialId
from hpsearch.auth import Authenticator, Permission, Principal
from hpsearch.store import Holder

COOKIE = "hpsearch_token"
# The tag of routes that read what a trial produced (its checkpoint, its logs): each also
# depends on holder_or_reader, which a test checks.
ARTIFACTS = "artifacts"

# Paths (templates, as declared) that need no token at all.
PUBLIC = frozenset(
    {
        "/api/v1/health",
        "/login",
        "/logout",
        "/static",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


def needed_permission(request: Request) -> tuple[Permission, ...]:
    """The permissions of which a token needs one to call the route; none for public ones."""
    # The request's path, not the route's: routers nest, so a route's own path lacks its
    # prefix. Read from the scope: request.url would parse the whole URL on every request.
    path: str = request.scope["path"]
    if path in PUBLIC or path.startswith("/static/"):
        return ()
    if path.startswith("/api/v1/tokens"):
        return ("admin",)
    reads = request.method in ("GET", "HEAD")
    route = request.scope.get("route")
    tags = (route.tags or []) if isinstance(route, APIRoute) else []
    if reads and ARTIFACTS in tags:
        return ("read", "work")  # work: only as the lease holder (holder_or_reader)
    if "workers" in tags:
        return ("read",) if path == "/api/v1/workers" else ("work",)
    return ("read",) if reads else ("submit",)


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.cookies.get(COOKIE)


async def authorize(request: Request) -> Principal | None:
    """The app-wide dependency: 401 without a valid token, 403 when the role is not enough.

    Asynchronous, so that the common case (the answer is cached) costs no trip to a thread;
    only a cache miss reads the database, in one."""
    authenticator: Authenticator = request.app.state.auth
    if authenticator.answers_from_cache(presented_token(request)):
        return _authorize(request, authenticator)
    return await run_in_threadpool(_authorize, request, authenticator)


def _authorize(request: Request, authenticator: Authenticator) -> Principal | None:
    if not authenticator.enabled():
        return None
    needed = needed_permission(request)
    if not needed:
        return None
    token = presented_token(request)
    principal = authenticator.authenticate(token) if token else None
    if principal is None:
        if _wants_html(request):
            raise HTTPException(status_code=303, headers={"Location": "/login"})
        raise HTTPException(
            status_code=401,
            detail="a valid API token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not any(principal.may(permission) for permission in needed):
        raise HTTPException(
            status_code=403, detail=f"role {principal.role} may not {' or '.join(needed)} here"
        )
    request.state.principal = principal
    return principal


def act_as(request: Request, worker_id: str) -> None:
    """403 unless the request's token may act under ``worker_id``: a worker token created
    with ``--workers`` only under the ids it names. Every route that takes a ``worker_id``
    (claims and each route of a lease) calls it before it does anything."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None and not principal.may_act_as(worker_id):
        raise HTTPException(
            status_code=403,
            detail=f"token {principal.name!r} may act only as workers {principal.workers!r}, "
            f"not as {worker_id!r}",
        )


async def holder_or_reader(
    request: Request,
    trial_id: TrialId,
    store: StoreDep,
    worker_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="a worker token: the worker holding the trial's lease (or the lease of "
            "its final test evaluation)",
        ),
    ] = None,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_ID, description="that lease's attempt")] = (
        None
    ),
) -> None:
    """Who may read a trial's artifacts (its checkpoint, its logs): a role that may read
    results, or a worker as the trial's current lease holder (it resumes the trial, runs a
    fork that starts from it, or evaluates its model on the test set), else 403. A route that
    reads artifacts depends on it and carries the ``artifacts`` tag."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or principal.may("read"):
        return  # authentication off, or a reader
    if worker_id is None or attempt is None:
        raise HTTPException(
            status_code=403,
            detail="a worker reads a trial's artifacts only as the holder of its lease: "
            "send worker_id and attempt",
        )
    act_as(request, worker_id)
    if not await run_in_threadpool(store.holds_lease, Holder(trial_id, worker_id, attempt)):
        raise HTTPException(
            status_code=403,
            detail=f"worker {worker_id!r} does not hold attempt {attempt} of trial {trial_id}'s "
            "lease",
        )


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
