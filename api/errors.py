"""Core errors mapped to HTTP, once. Every error body is ``{code, message, errors[]}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from api.schemas import ErrorBody, FieldProblem
from hpsearch.artifacts import ArtifactTooLarge
from hpsearch.errors import HpsearchError, InvalidInput, InvalidState, LeaseLost, NotFound
from hpsearch.spec import SpecError, field_path, plain_errors

log = logging.getLogger("hpsearch.server")

_STATUS: dict[type[HpsearchError], int] = {
    NotFound: 404,
    InvalidState: 409,
    LeaseLost: 409,
    InvalidInput: 422,
    ArtifactTooLarge: 413,
}


# Stable codes for the errors the HTTP layer itself raises (auth, routing, size).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


# The errors any REST route may answer, for the OpenAPI document: an unreadable body (400),
# a missing or weak token (401, 403), a body over the size limit (413), invalid input (422),
# the database not answering (503: nothing was done, retry; hpsearch.client does).
EVERY_ROUTE: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 413, 422, 503)
}


def _json(status: int, body: ErrorBody) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump())


def install(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        problems = [FieldProblem(field=e.field, message=e.message, line=e.line) for e in exc.errors]
        return _json(422, ErrorBody(code="invalid_spec", message=str(exc), errors=problems))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for loc, message in plain_errors(_undecodable(exc.errors())):
            where = loc[0] if loc else "body"
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:]
            field = field_path(loc) if loc else f"({where})"
            problems.append(FieldProblem(field=field, message=message))
        text = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return _json(422, ErrorBody(code="validation_error", message=text, errors=problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = _json(exc.status_code, ErrorBody(code=code, message=str(exc.detail)))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        # A lost connection or a database restarting (PostgreSQL), a lock held too long
        # (SQLite): the transaction was rolled back, so the request may simply be sent again.
        log.warning("database unavailable: %s", str(exc.orig or exc).strip().splitlines()[0])
        body = ErrorBody(
            code="database_unavailable",
            message="the database is not answering (restarting?); nothing was changed, retry",
        )
        response = _json(503, body)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(HpsearchError)
    async def _core(_: Request, exc: HpsearchError) -> JSONResponse:
        status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 400)
        problems = []
        if isinstance(exc, InvalidInput):
            problems = [FieldProblem(field=exc.field, message=exc.message)]
        return _json(status, ErrorBody(code=exc.code, message=str(exc), errors=problems))


def _undecodable(errors: Sequence[Any]) -> list[Any]:
    """A body that is not JSON is reported at ``(body)``, with the decoder's reason, rather
    than at the character offset FastAPI puts in its location."""
    out = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            offset = err["loc"][-1] if len(err.get("loc", ())) > 1 else None
            at = f" at character {offset}" if isinstance(offset, int) else ""
            err = {**err, "loc": ("body",), "msg": f"not valid JSON{at}: {reason}".rstrip(": ")}
        out.append(err)
    return out


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path: Starlette's own 405 names only
    the methods of the first route that matched the path."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return sorted(methods)
