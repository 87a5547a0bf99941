"""Who may call what: one policy for every route, applied as an app-wide dependency.

Authentication is on as soon as one token exists (``hpsearch token create``). Requests carry
``Authorization: Bearer <token>``; browsers log in once at ``/login`` and then carry the token
in an HttpOnly, SameSite=Strict cookie. The permission a route needs follows from the route:
worker endpoints need ``work``; other reads need ``read``; other writes need ``submit``;
``/api/v1/tokens`` needs ``admin``.
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from hpsearch.auth import Authenticator, Permission, Principal

COOKIE = "hpsearch_token"

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


def needed_permission(request: Request) -> Permission | None:
    # The request's path, not the route's: routers nest, so a route's own path lacks its
    # prefix. Read from the scope: request.url would parse the whole URL on every request.
    path: str = request.scope["path"]
    if path in PUBLIC or path.startswith("/static/"):
        return None
    if path.startswith("/api/v1/tokens"):
        return "admin"
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and "workers" in (route.tags or []):
        return "read" if path == "/api/v1/workers" else "work"
    return "read" if request.method in ("GET", "HEAD") else "submit"


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
    permission = needed_permission(request)
    if permission is None:
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
    if not principal.may(permission):
        raise HTTPException(
            status_code=403, detail=f"role {principal.role} may not {permission} here"
        )
    request.state.principal = principal
    return principal


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
