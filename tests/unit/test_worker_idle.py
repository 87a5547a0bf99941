"""How long an idle worker waits between claims."""

from __future__ import annotations

from workers.loop import _Idle


def test_an_idle_worker_claims_again_soon_at_first_then_backs_off_to_its_poll() -> None:
    idle = _Idle(60.0, print)
    assert [idle.next_wait(1.0) for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    idle.reset()  # a trial was claimed: the next idle spell starts short again
    assert idle.next_wait(1.0) == 0.05
    assert _Idle(60.0, print).next_wait(0.02) == 0.02  # never longer than the poll asked for
