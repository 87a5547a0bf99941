"""At most once per interval, per key: for probes that almost always find nothing, and for
reads whose answer rarely changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


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


class Recent(Generic[V]):
    """A value per key, read again once it is ``seconds`` old or cleared (0: every time)."""

    def __init__(self, seconds: float, max_keys: int = 4096) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self._values: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], V]) -> V:
        kept = self.kept(key)
        if kept is not None:
            return kept
        value = read()
        self.put(key, value)
        return value

    def kept(self, key: Hashable) -> V | None:
        """The value for ``key`` if it is less than ``seconds`` old, else None."""
        if self.seconds <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            kept = self._values.get(key)
        return kept[1] if kept is not None and now - kept[0] < self.seconds else None

    def put(self, key: Hashable, value: V) -> None:
        """``value``, just read elsewhere, as the one to give for the next ``seconds``."""
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._values) >= self.max_keys:
                self._values.clear()
            self._values[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
