"""The timed work of the leases a worker process holds, on one long-lived thread.

A lease has three things to do on a clock while its trial trains: beat (workers/heartbeat.py),
send reports held back once they fall due (workers/reports.py) and send new log output
(workers/trial_log.py). Each used to have a thread of its own, started at the claim and
joined at the completion: six thread switches per trial, each waiting for the operating
system to schedule a new thread on a machine whose cores the trials and the server keep busy.
That was most of a short trial's scheduling overhead (docs/performance.md, "Scheduling
overhead"). A :class:`Ticker` runs them all, as they fall due, on one thread that outlives the
trials; adding and removing a duty only takes a lock.

Duties run one at a time: a slow call delays the next duty, not the trial. Every duty's
interval (seconds) is far longer than one call, and a pack's trials share a server.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

log = logging.getLogger("hpsearch.worker")


class Duty(Protocol):
    def due_in(self) -> float | None:
        """Seconds until :meth:`run` has something to do (0 or less: now); None: nothing is
        scheduled until :meth:`Ticker.poke`."""
        ...

    def run(self) -> None:
        """Does what is due. Errors are the duty's to handle; one that escapes is logged."""
        ...


class Ticker:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._duties: list[Duty] = []
        self._running: Duty | None = None
        self._thread: threading.Thread | None = None

    def add(self, duty: Duty) -> None:
        with self._changed:
            self._duties.append(duty)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def remove(self, duty: Duty) -> None:
        """Takes a duty off; once this returns it does not run again (waits while it runs)."""
        with self._changed:
            while self._running is duty:
                self._changed.wait()
            if duty in self._duties:
                self._duties.remove(duty)

    def poke(self) -> None:
        """A duty's deadline moved closer (new work came): look again. Call it without
        holding a lock that the duty's :meth:`Duty.due_in` takes."""
        with self._changed:
            self._changed.notify_all()

    def _run(self) -> None:
        with self._changed:
            while True:
                duty, wait = self._next()
                if duty is None:
                    self._changed.wait(wait)
                    continue
                self._running = duty
                self._changed.release()
                try:
                    duty.run()
                except Exception:
                    log.exception("a lease's timed work failed")
                finally:
                    self._changed.acquire()
                    self._running = None
                    self._changed.notify_all()

    def _next(self) -> tuple[Duty | None, float | None]:
        """The first duty due now, or none and how long to wait for one."""
        soonest: float | None = None
        for duty in self._duties:
            due = duty.due_in()
            if due is None:
                continue
            if due <= 0:
                # Round-robin: the one that runs goes to the back, so a duty always due
                # (a server that cannot be reached) does not starve the others.
                self._duties.remove(duty)
                self._duties.append(duty)
                return duty, None
            soonest = due if soonest is None else min(soonest, due)
        return None, soonest


_ticker: tuple[int, Ticker] | None = None
_made = threading.Lock()


def process_ticker() -> Ticker:
    """This process's ticker, made at first use (a worker slot is a process of its own)."""
    global _ticker
    with _made:
        if _ticker is None or _ticker[0] != os.getpid():
            _ticker = (os.getpid(), Ticker())
        return _ticker[1]
