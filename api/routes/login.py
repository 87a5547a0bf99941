"""Browser log-in: a token typed once, kept in an HttpOnly, SameSite=Strict cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import COOKIE
from api.deps import SettingsDep
from api.web_assets import templates
from hpsearch.auth import Authenticator

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
def login(
    request: Request, settings: SettingsDep, token: Annotated[str, Form(max_length=200)]
) -> Response:
    authenticator: Authenticator = request.app.state.auth
    principal = authenticator.authenticate(token.strip())
    if principal is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": "That token is unknown or revoked."},
            status_code=401,
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies or request.url.scheme == "https",
        max_age=30 * 24 * 3600,
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
