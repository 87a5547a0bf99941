"""A lease kept alive from a background thread while a trial (or a test evaluation) runs."""

from __future__ import annotations

import logging
import threading
from typing import Self

from hpsearch.client import ApiError, ServerUnreachable

log = logging.getLogger("hpsearch.worker")


class Heartbeat:
    """Calls :meth:`beat` every ``every`` seconds inside its ``with`` block.

    A 409 means the lease is gone (it expired and the trial went to another worker): beating
    stops and :meth:`on_lost` runs. Other failures are logged and the next beat tries again,
    so a server restart does not cost the lease.
    """

    def __init__(self, every: float) -> None:
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def beat(self) -> None:
        raise NotImplementedError

    def on_lost(self) -> None:
        """The server gave the lease away."""

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                self.beat()
            except ApiError as e:
                if e.status == 409:
                    self.on_lost()
                    return
                log.warning("heartbeat failed: %s", e)
            except ServerUnreachable as e:
                log.warning("heartbeat failed: %s", e)
