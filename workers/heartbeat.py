"""A lease kept alive while a trial (or a test evaluation) runs, from the process's ticker."""

from __future__ import annotations

import logging
import time
from typing import Self

from hpsearch.client import ApiError, ServerUnreachable
from workers.ticker import Ticker, process_ticker

log = logging.getLogger("hpsearch.worker")


class Heartbeat:
    """Calls :meth:`beat` every ``every`` seconds inside its ``with`` block.

    A 409 means the lease is gone (it expired and the trial went to another worker): beating
    stops and :meth:`on_lost` runs. Other failures are logged and the next beat tries again,
    so a server restart does not cost the lease.
    """

    def __init__(self, every: float, ticker: Ticker | None = None) -> None:
        self._every = every
        self._ticker = ticker or process_ticker()
        self._last = time.monotonic()
        self._beating = False

    def __enter__(self) -> Self:
        self._last = time.monotonic()
        self._beating = True
        self._ticker.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        self._ticker.remove(self)
        self._beating = False

    def beat(self) -> None:
        raise NotImplementedError

    def on_lost(self) -> None:
        """The server gave the lease away."""

    def due_in(self) -> float | None:
        return self._last + self._every - time.monotonic() if self._beating else None

    def run(self) -> None:
        self._last = time.monotonic()
        try:
            self.beat()
        except ApiError as e:
            if e.status == 409:
                self._beating = False
                self.on_lost()
                return
            log.warning("heartbeat failed: %s", e)
        except ServerUnreachable as e:
            log.warning("heartbeat failed: %s", e)
