"""A trial's per-epoch reports on their way to the server, sent together when epochs are quick.

The claim says how long the worker may hold reports back (``report_interval_s``; 0 when the
study's pruner judges every step as it comes). A step is sent at once when that long has passed
since the trial's last message that carried reports (the claim counts as the first); otherwise
it is held back, and goes with the next report sent (its ``earlier``), with the completion (its
``steps``), or on its own once it is due: an epoch slow to follow a quick one must not keep its
predecessor from the server. Checkpoints go after the reports they cover (:class:`ReportsFirst`),
so a trial resumed after its checkpoint's step never misses the steps before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hpsearch.client import ApiError, ServerUnreachable

if TYPE_CHECKING:  # it imports torch, which a worker loads only when a trial trains
    from workers.training.checkpoint import Checkpoints

log = logging.getLogger("hpsearch.worker")

Metrics = dict[str, float | None]
Step = tuple[int, Metrics]
Send = Callable[[int, Metrics, list[Step]], Mapping[str, Any]]
"""``send(step, metrics, earlier)``: one report to the server, returning its ack."""
Clock = Callable[[], float]


class TrialReports:
    """The held-back steps of one trial, and why the server wants the trial stopped (if it
    does), from the last ack of a report or a heartbeat.

    Thread-safe: the training thread adds steps while the lease's heartbeat notes acks and,
    after :meth:`start`, a thread of its own sends held steps when they fall due. A send holds
    the lock, so steps reach the server in order and a step is never sent twice at once.
    """

    def __init__(self, send: Send, interval_s: float, clock: Clock = time.monotonic) -> None:
        self.interval_s = interval_s
        self.stop_reason: str | None = None
        self._send = send
        self._clock = clock
        self._held: list[Step] = []
        self._last_sent = clock()
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._refused: ApiError | None = None  # a 409 met by that thread, for the trainer

    def add(self, step: int, metrics: Metrics) -> str | None:
        """Records one step, sending it with the held ones if they are due; returns the
        latest known stop reason (None: train on)."""
        with self._changed:
            self._raise_refusal()
            self._held.append((step, metrics))
            if self._due():
                self._send_held()
            else:
                self._changed.notify()  # the sending thread's deadline starts now
        return self.stop_reason

    def note(self, ack: Mapping[str, Any]) -> None:
        """Remembers a stop asked for in a report's or heartbeat's ack."""
        if ack["should_stop"]:
            self.stop_reason = ack["reason"]

    def held(self) -> list[Step]:
        with self._changed:
            return list(self._held)

    def due_in(self) -> float | None:
        """Seconds until the held steps must go out (0: now); None when none are held."""
        with self._changed:
            return self._due_in()

    def flush(self) -> None:
        """Sends the held steps now, if any: before a checkpoint, a failure or a hand-back."""
        with self._changed:
            self._raise_refusal()
            if self._held:
                self._send_held()

    def take(self) -> list[Step]:
        """The held steps, oldest first, for the completion to carry; none are held after."""
        with self._changed:
            held, self._held = self._held, []
            return held

    def start(self) -> None:
        """Sends held steps from a thread once they are due (not needed with interval 0:
        nothing is ever held)."""
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._send_when_due, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stops that thread; steps still held stay held (for :meth:`take`)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _due(self) -> bool:
        return self.interval_s <= 0 or self._clock() - self._last_sent >= self.interval_s

    def _due_in(self) -> float | None:
        if not self._held:
            return None
        return 0.0 if self._due() else self._last_sent + self.interval_s - self._clock()

    def _raise_refusal(self) -> None:
        # The lease is gone: the trainer hears it at its next report, as if it had sent it.
        if self._refused is not None:
            raise self._refused

    def _send_held(self) -> None:
        *earlier, (step, metrics) = self._held
        self._last_sent = self._clock()
        ack = self._send(step, metrics, earlier)
        self._held = []  # only once the server has them: a failed send leaves them held
        self.note(ack)

    def _send_when_due(self) -> None:
        with self._changed:
            while not self._closed:
                wait = self._due_in()
                if wait is None or wait > 0:
                    self._changed.wait(wait)  # for the deadline, a new step, or close()
                    continue
                # A send that fails leaves the steps held, to try again an interval after it.
                try:
                    self._send_held()
                except ApiError as e:
                    if e.status == 409:
                        self._refused = e
                        return
                    log.warning("held reports not sent: %s", e)
                except ServerUnreachable as e:
                    log.warning("held reports not sent: %s", e)


class ReportsFirst:
    """A trial's checkpoints, each saved after the held reports it covers are sent: a trial
    resumed from a checkpoint reports from the step after it, so the steps up to it must be
    on the server already."""

    def __init__(self, checkpoints: Checkpoints, reports: TrialReports) -> None:
        self._checkpoints = checkpoints
        self._reports = reports

    def load(self) -> bytes | None:
        return self._checkpoints.load()

    def save(self, step: int, data: bytes) -> None:
        self._reports.flush()
        self._checkpoints.save(step, data)
