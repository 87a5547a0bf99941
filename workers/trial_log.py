"""What a trial prints, on its way to the server (``GET /trials/{id}/logs``, the trial page).

A command trial's program writes into the log through its pipes (``workers/command.py``); a
built-in or entry-point trial, which runs inside the worker, through :meth:`TrialLog.capture`,
which copies what Python code writes to ``sys.stdout`` and ``sys.stderr`` (the worker's own
progress lines, written to the stream they were given at the start, are not the trial's). A
failed trial's traceback is written last.

The process's ticker (:mod:`workers.ticker`) sends what is new about once a second, each
piece with the byte offset it starts at, so a piece resent after a lost reply is not stored
twice. At most ``MAX_LOG_BYTES`` wait to be sent (the server keeps no more of an attempt):
when the server cannot be reached for long, the oldest output waiting goes, and the log says
so.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from hpsearch.client import MAX_LOG_PIECE_CHARS, ApiError, ServerUnreachable
from hpsearch.trial_logs import MAX_LOG_BYTES
from workers.ticker import Ticker, process_ticker

log = logging.getLogger("hpsearch.worker")

Send = Callable[[int, str], object]
"""Sends a piece of the log that starts at the given byte offset."""


class TrialLog:
    def __init__(self, send: Send, every: float = 1.0, ticker: Ticker | None = None) -> None:
        self._send = send
        self._every = every
        self._ticker = ticker or process_ticker()
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._offset = 0  # bytes sent so far
        self._lost = False  # the lease went: nothing more is heard
        self._started = False
        self._closed = False

    def __enter__(self) -> TrialLog:
        self._started = True
        self._ticker.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            first = not self._pending
            self._pending.append(text)
            self._pending_bytes += len(text.encode("utf-8", errors="replace"))
            if self._pending_bytes > MAX_LOG_BYTES:
                self._drop_oldest()
        if first and self._started and not self._closed:
            self._ticker.poke()  # something to send: the ticker looks at its deadline again

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Copies what Python code writes to ``sys.stdout`` and ``sys.stderr`` into the log,
        while still writing it where it went."""
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, self.write), _Tee(err, self.write)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err

    def close(self) -> None:
        """Sends what is left; before the trial's outcome, so the log is whole when it ends."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._ticker.remove(self)
        self._flush()

    def due_in(self) -> float | None:
        with self._lock:
            if self._lost or not self._pending:
                return None
        return self._last + self._every - time.monotonic()

    def run(self) -> None:
        self._last = time.monotonic()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            if self._lost or not self._pending:
                return
            text = "".join(self._pending)
            self._pending, self._pending_bytes = [], 0
        for start in range(0, len(text), MAX_LOG_PIECE_CHARS):
            piece = text[start : start + MAX_LOG_PIECE_CHARS]
            if not self._send_piece(piece):
                with self._lock:  # kept for the next try, ahead of what came meanwhile
                    rest = text[start:]
                    self._pending.insert(0, rest)
                    self._pending_bytes += len(rest.encode("utf-8", errors="replace"))
                return

    def _send_piece(self, piece: str) -> bool:
        try:
            self._send(self._offset, piece)
        except ApiError as e:
            if e.status == 409:
                self._lost = True
                return True  # the lease is gone, and with it the log: drop the rest
            log.warning("trial log not sent: %s", e.message)
            return False
        except ServerUnreachable as e:
            log.warning("trial log not sent: %s", e)
            return False
        self._offset += len(piece.encode("utf-8", errors="replace"))
        return True

    def _drop_oldest(self) -> None:
        dropped = 0
        while self._pending and self._pending_bytes > MAX_LOG_BYTES * 3 // 4:
            size = len(self._pending.pop(0).encode("utf-8", errors="replace"))
            self._pending_bytes -= size
            dropped += size
        note = f"[... {dropped} bytes of output dropped: the server could not be reached ...]\n"
        self._pending.insert(0, note)
        self._pending_bytes += len(note)


class _Tee:
    """A text stream that writes to another one and to the log."""

    def __init__(self, stream: TextIO, copy: Callable[[str], None]) -> None:
        self._stream = stream
        self._copy = copy

    def write(self, text: str) -> int:
        self._copy(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
