"""Report coalescing (workers.reports): which steps go to the server when, on a clock the
test moves, with ``send`` recording what a report would carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from hpsearch.client import ApiError
from tests.conftest import wait_for
from workers.reports import Metrics, ReportsFirst, Step, TrialReports

GO_ON = {"should_stop": False, "reason": None}


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Server:
    """What the worker sent, as (step, earlier) pairs, and the acks it answers with."""

    sent: list[tuple[int, list[int]]] = field(default_factory=list)
    attempts: int = 0
    metrics: dict[int, Metrics] = field(default_factory=dict)
    acks: list[Mapping[str, Any]] = field(default_factory=list)
    refuse: ApiError | None = None

    def send(self, step: int, metrics: Metrics, earlier: list[Step]) -> Mapping[str, Any]:
        self.attempts += 1
        if self.refuse is not None:
            raise self.refuse
        self.sent.append((step, [s for s, _ in earlier]))
        self.metrics.update({s: m for s, m in [*earlier, (step, metrics)]})
        return self.acks.pop(0) if self.acks else GO_ON


def m(step: int) -> Metrics:
    return {"dev_accuracy": step / 10}


def test_interval_zero_sends_every_step_at_once() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 0.0, clock)
    for step in (1, 2, 3):
        assert reports.add(step, m(step)) is None
    assert server.sent == [(1, []), (2, []), (3, [])]
    assert reports.take() == []


def test_quick_steps_are_held_then_sent_together_once_the_interval_has_passed() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 1.0, clock)  # the claim, at t=100, starts the interval
    clock.now = 100.4
    reports.add(1, m(1))
    clock.now = 100.8
    reports.add(2, m(2))
    assert server.sent == []
    assert reports.held() == [(1, m(1)), (2, m(2))]
    assert reports.due_in() == pytest.approx(0.2)

    clock.now = 101.0
    reports.add(3, m(3))
    assert server.sent == [(3, [1, 2])]  # oldest first, the newest as the report's own step
    assert server.metrics == {1: m(1), 2: m(2), 3: m(3)}
    assert reports.due_in() is None

    # The interval counts from that report, not from the claim.
    clock.now = 101.9
    reports.add(4, m(4))
    assert server.sent == [(3, [1, 2])]
    clock.now = 102.0
    reports.add(5, m(5))
    assert server.sent == [(3, [1, 2]), (5, [4])]


def test_a_slow_step_goes_at_once() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 1.0, clock)
    clock.now = 105.0
    reports.add(1, m(1))
    assert server.sent == [(1, [])]


def test_steps_still_held_at_the_end_go_with_the_completion() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 60.0, clock)
    for step in (1, 2, 3):
        clock.now += 1
        reports.add(step, m(step))
    assert server.sent == []
    assert reports.take() == [(1, m(1)), (2, m(2)), (3, m(3))]
    assert reports.take() == []  # taken once: a second completion would not carry them again


def test_while_steps_are_held_the_last_known_stop_decision_is_returned() -> None:
    stop = {"should_stop": True, "reason": "stop requested"}
    server, clock = Server(acks=[GO_ON, stop]), Clock()
    reports = TrialReports(server.send, 1.0, clock)
    clock.now = 101.0
    assert reports.add(1, m(1)) is None  # sent: the server says go on
    clock.now = 101.5
    assert reports.add(2, m(2)) is None  # held: nothing new is known
    # A heartbeat's ack carries the stop; the next held step says so without a request.
    reports.note({"should_stop": True, "reason": "study stopped"})
    clock.now = 101.6
    assert reports.add(3, m(3)) == "study stopped"
    assert server.sent == [(1, [])]
    # A go-on ack does not undo a stop already asked for.
    reports.note(GO_ON)
    assert reports.stop_reason == "study stopped"


def test_a_report_ack_that_says_stop_is_remembered() -> None:
    server = Server(acks=[{"should_stop": True, "reason": "asha: below the rung"}])
    reports = TrialReports(server.send, 0.0, Clock())
    assert reports.add(1, m(1)) == "asha: below the rung"
    assert reports.stop_reason == "asha: below the rung"


def test_flush_sends_what_is_held_before_a_failure_or_hand_back() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 60.0, clock)
    reports.flush()
    assert server.sent == []  # nothing held: no request
    reports.add(1, m(1))
    reports.add(2, m(2))
    reports.flush()
    assert server.sent == [(2, [1])]
    assert reports.take() == []


def test_a_refused_send_keeps_the_steps_held() -> None:
    server, clock = Server(refuse=ApiError(409, "lease_lost", "not yours")), Clock()
    reports = TrialReports(server.send, 1.0, clock)
    clock.now = 100.5
    reports.add(1, m(1))
    clock.now = 101.5
    with pytest.raises(ApiError):
        reports.add(2, m(2))
    assert [s for s, _ in reports.held()] == [1, 2]


@dataclass
class MemoryCheckpoints:
    saved: list[tuple[int, int]] = field(default_factory=list)  # (step, reports sent by then)
    server: Server = field(default_factory=Server)

    def load(self) -> bytes | None:
        return None

    def save(self, step: int, data: bytes) -> None:
        self.saved.append((step, len(self.server.sent)))


def test_a_checkpoint_is_saved_after_the_reports_it_covers() -> None:
    server, clock = Server(), Clock()
    reports = TrialReports(server.send, 60.0, clock)
    store = MemoryCheckpoints(server=server)
    checkpoints = ReportsFirst(store, reports)
    reports.add(1, m(1))
    reports.add(2, m(2))
    checkpoints.save(2, b"state after epoch 2")
    assert server.sent == [(2, [1])]
    assert store.saved == [(2, 1)]


def test_a_held_step_goes_out_on_its_own_when_the_next_is_slow_to_come() -> None:
    # The real clock: the sending thread waits on it. A step held back must not wait for an
    # epoch that may take minutes (or for a trainer that waits on something else).
    server = Server()
    reports = TrialReports(server.send, 0.2)
    reports.start()
    try:
        reports.add(1, m(1))
        wait_for(lambda: server.sent, 10, "the held step to be sent")
        assert server.sent == [(1, [])]
        assert reports.held() == []
    finally:
        reports.close()
    reports.add(2, m(2))  # closed: held until taken, as for the completion
    assert reports.take() in ([(2, m(2))], [])


def test_a_lease_lost_while_steps_were_sent_on_their_own_stops_the_next_report() -> None:
    server = Server(refuse=ApiError(409, "lease_lost", "trial 7 is leased to another worker"))
    reports = TrialReports(server.send, 0.2)
    reports.start()
    try:
        reports.add(1, m(1))
        wait_for(lambda: server.attempts, 10, "the held step to be sent")
        # The trainer hears the refusal at its next report, as if it had sent it itself.
        with pytest.raises(ApiError, match="leased to another worker"):
            reports.add(2, m(2))
        with pytest.raises(ApiError):
            reports.flush()
    finally:
        reports.close()
