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


class StatusOf:
    """An ASGI ``send`` that remembers the status of the response it sends: 500 until one
    starts (what the server answers when the app raises before it responds)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        _to_stderr()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = StatusOf(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            ms = (time.perf_counter() - started) * 1000
            client = scope.get("client")
            who = client[0] if client else "-"
            log.info("%s %s %s %d %.1fms", who, scope["method"], scope["path"], sent.status, ms)
