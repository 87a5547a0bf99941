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
from workers.ticker import Ticker, process_ticker

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
    after :meth:`start`, the process's ticker sends held steps when they fall due. A send holds
    the lock, so steps reach the server in order and a step is never sent twice at once.
    """

    def __init__(
        self,
        send: Send,
        interval_s: float,
        clock: Clock = time.monotonic,
        ticker: Ticker | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.stop_reason: str | None = None
        self._send = send
        self._clock = clock
        self._held: list[Step] = []
        self._last_sent = clock()
        self._lock = threading.Lock()
        self._ticker = ticker or process_ticker()
        self._started = False
        self._refused: ApiError | None = None  # a 409 met by the ticker, for the trainer

    def add(self, step: int, metrics: Metrics) -> str | None:
        """Records one step, sending it with the held ones if they are due; returns the
        latest known stop reason (None: train on)."""
        with self._lock:
            self._raise_refusal()
            self._held.append((step, metrics))
            due = self._due()
            if due:
                self._send_held()
        if not due and self._started:
            self._ticker.poke()  # a deadline starts now (outside the lock: the ticker takes it)
        return self.stop_reason

    def note(self, ack: Mapping[str, Any]) -> None:
        """Remembers a stop asked for in a report's or heartbeat's ack."""
        if ack["should_stop"]:
            self.stop_reason = ack["reason"]

    def held(self) -> list[Step]:
        with self._lock:
            return list(self._held)

    def due_in(self) -> float | None:
        """Seconds until the held steps must go out (0: now); None when none are held, or
        when the lease is gone."""
        with self._lock:
            return None if self._refused is not None else self._due_in()

    def flush(self) -> None:
        """Sends the held steps now, if any: before a checkpoint, a failure or a hand-back."""
        with self._lock:
            self._raise_refusal()
            if self._held:
                self._send_held()

    def take(self) -> list[Step]:
        """The held steps, oldest first, for the completion to carry; none are held after."""
        with self._lock:
            held, self._held = self._held, []
            return held

    def start(self) -> None:
        """Sends held steps from the process's ticker once they are due (not needed with
        interval 0: nothing is ever held)."""
        if self.interval_s > 0 and not self._started:
            self._started = True
            self._ticker.add(self)

    def close(self) -> None:
        """Stops sending held steps on their own; those still held stay held (for
        :meth:`take`)."""
        if self._started:
            self._ticker.remove(self)
            self._started = False

    def run(self) -> None:
        """The ticker's call: sends the held steps if they are due. A send that fails leaves
        them held, to try again an interval after it."""
        with self._lock:
            if self._refused is not None or not self._held or not self._due():
                return
            try:
                self._send_held()
            except ApiError as e:
                if e.status == 409:
                    self._refused = e
                    return
                log.warning("held reports not sent: %s", e)
            except ServerUnreachable as e:
                log.warning("held reports not sent: %s", e)

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
