"""The access log: one line per request, as plain ASGI middleware.

``METHOD path status duration``, written when the response has been sent (a streamed
checkpoint, too, is timed to its last byte), for every request the app sees, refusals by the
size limit and authentication included. The query string is left out: it is not needed to
follow a request and could carry what does not belong in a log. uvicorn's own access log
stays off: it has no duration. ``hpsearch server --no-access-log`` (``HPSEARCH_ACCESS_LOG=0``)
turns this one off.
"""

from __future__ import annotations

import logging
import sys
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("hpsearch.access")


def _to_stderr() -> None:
    # uvicorn configures its own loggers only; without a handler of its own, this one's
    # INFO lines would go nowhere.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class AfterResponse:
    """ASGI middleware that calls :meth:`done` once each HTTP response has been sent (its
    last byte) or the app raised, with the status (500 when the app raised before it
    responded) and the seconds since the request came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.done(scope, status, time.perf_counter() - started)

    def done(self, scope: Scope, status: int, seconds: float) -> None:
        raise NotImplementedError


class AccessLog(AfterResponse):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        _to_stderr()

    def done(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        who = client[0] if client else "-"
        ms = seconds * 1000
        log.info("%s %s %s %d %.1fms", who, scope["method"], scope["path"], status, ms)
