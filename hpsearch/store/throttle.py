"""At most once per interval, per key: for probes that almost always find nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class Throttle:
    def __init__(self, seconds: float, max_keys: int = 4096) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def due(self, key: Hashable) -> bool:
        """True when ``key`` was not due in the last ``seconds`` (and records this time)."""
        if self.seconds <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                return False
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = now
            return True

    def reset(self) -> None:
        """Every key due again (something the probe looks for has just been made here)."""
        with self._lock:
            self._last.clear()
