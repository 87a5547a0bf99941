"""The ticker (workers.ticker): one long-lived thread runs every held lease's timed work, so
a trial costs no thread of its own; duties run when due, in turn, and are gone once removed."""

from __future__ import annotations

import threading
import time
from typing import Any

from hpsearch.client import ServerUnreachable
from tests.conftest import wait_for
from workers.lease import Lease
from workers.ticker import Ticker


class Every:
    """A duty due ``every`` seconds after its last run; counts its runs."""

    def __init__(self, every: float, fails: bool = False) -> None:
        self.every = every
        self.fails = fails
        self.runs = 0
        self.last = time.monotonic() - every

    def due_in(self) -> float | None:
        return self.last + self.every - time.monotonic()

    def run(self) -> None:
        self.runs += 1
        self.last = time.monotonic()
        if self.fails:
            raise RuntimeError("the server said no")


class Blocking:
    """A duty due now whose run waits until released."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()
        self.done = False

    def due_in(self) -> float | None:
        return None if self.done else 0.0

    def run(self) -> None:
        self.running.set()
        self.release.wait(10)
        self.done = True


class Server:
    """What a lease's client calls, answered at once."""

    def __init__(self) -> None:
        self.beats = 0

    def heartbeat(self, *_: Any) -> dict[str, Any]:
        self.beats += 1
        return {"should_stop": False, "reason": None}

    def report(self, *_: Any) -> dict[str, Any]:
        return {"should_stop": False, "reason": None}

    def append_log(self, *_: Any) -> dict[str, Any]:
        raise ServerUnreachable("not listening")


def test_duties_run_in_turn_and_one_that_fails_runs_again_when_due() -> None:
    ticker = Ticker()
    # Two duties always due: each gets its turn (the first does not starve the second).
    first, second = Every(0.0), Every(0.0)
    failing = Every(0.01, fails=True)  # raises every time: logged, and due again later
    for duty in (first, second, failing):
        ticker.add(duty)
    wait_for(lambda: min(first.runs, second.runs, failing.runs) >= 3, 10, "every duty to run")
    for duty in (first, second, failing):
        ticker.remove(duty)
    after = first.runs, second.runs, failing.runs
    ticker.add(probe := Every(0.0))
    wait_for(lambda: probe.runs >= 2, 10, "a later duty to run twice")
    assert (first.runs, second.runs, failing.runs) == after  # removed: never run again


def test_remove_waits_for_the_duty_it_removes_to_finish() -> None:
    ticker = Ticker()
    duty = Blocking()
    ticker.add(duty)
    assert duty.running.wait(10)
    removed = threading.Event()
    remover = threading.Thread(target=lambda: (ticker.remove(duty), removed.set()))
    remover.start()
    # While the duty runs (a heartbeat in flight), its lease is not gone yet.
    assert not removed.wait(0.2)
    duty.release.set()
    assert removed.wait(10)
    assert duty.done
    remover.join()


def test_leases_start_no_thread_per_trial() -> None:
    # A worker slot runs trial after trial: the heartbeat, held reports and log of each ride
    # on the process's one ticker thread, so the thread count does not move with the trials.
    server = Server()
    claim = {"id": 1, "attempt": 1, "report_interval_s": 5.0}
    with Lease(server, "w", claim, heartbeat_seconds=0.05):  # type: ignore[arg-type]
        wait_for(lambda: server.beats >= 1, 10, "the first heartbeat")
    threads = threading.active_count()
    for _ in range(50):
        with Lease(server, "w", claim, heartbeat_seconds=60.0) as lease:  # type: ignore[arg-type]
            lease.reports.add(1, {"dev_accuracy": 0.5})  # held: the interval is 5 s
            lease.log.write("epoch 1\n")  # its send fails: kept for the next try
            assert threading.active_count() == threads
    assert threading.active_count() == threads
