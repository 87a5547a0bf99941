"""A trial a slot holds ahead (``hpsearch worker --prefetch``): claimed while the slot's
current trial runs, started the moment that one ends, while the completion goes to the server
in the background and claims the trial after it.

Without it, a slot's trial ends, its completion claims the next one, and the slot waits for
that round trip: on a loaded machine 15–30 ms per trial, most of the scheduling overhead of
short trials (docs/performance.md). With it the round trip overlaps the next trial.

The server gives a trial ahead only where holding it costs nothing (a sampler that ignores
results, room in the study's parallelism for another trial after it: see
``hpsearch.store.claims.ClaimRequest``). Off by default: where trials' lengths differ, a trial
held behind a long one waits while another slot may idle at the end of a study. A held trial
is an ordinary lease: it heartbeats (from the process's ticker) until it starts; a worker
killed while holding it stops heartbeating, so its lease expires and the trial is retried like
any other; a worker that stops hands it back. The completion sent as it starts names it, so
its recorded start is then, not its claim.

The requests go out on the process's ticker thread (:mod:`workers.ticker`) as one-off duties,
so the slot's own thread only trains; at most one is on its way per slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError, Client, Interrupted
from workers.heartbeat import Heartbeat
from workers.ticker import Ticker, process_ticker

if TYPE_CHECKING:
    from workers.loop import TrialBudget

Reply = dict[str, Any]


class HeldLease(Heartbeat):
    """The lease of a trial held ahead, kept alive until the trial starts."""

    def __init__(
        self, client: Client, worker_id: str, claim: ClaimedJob, every: float, ticker: Ticker
    ) -> None:
        super().__init__(every, ticker)
        self.client = client
        self.worker_id = worker_id
        self.claim = claim
        self.lost = False

    def beat(self) -> None:
        self.client.heartbeat(self.claim["id"], self.worker_id, self.claim["attempt"])

    def on_lost(self) -> None:
        self.lost = True


class _Once:
    """One request, run once by the ticker; :meth:`wait` gives its reply (or raises its
    error) on the slot's thread."""

    def __init__(self, call: Callable[[], Reply | None]) -> None:
        self._call = call
        self._started = False
        self._done = threading.Event()
        self._reply: Reply | None = None
        self._error: BaseException | None = None

    def due_in(self) -> float | None:
        return None if self._started else 0.0

    def run(self) -> None:
        self._started = True
        try:
            self._reply = self._call()
        except Exception as e:  # handed to the slot's thread, which raises it there
            self._error = e
        finally:
            self._done.set()

    def wait(self) -> Reply | None:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._reply


class Ahead:
    """One slot's trial held ahead, and the request on its way that may bring one.

    ``budget`` is the worker's ``--max-trials``: a trial held ahead takes its share when it is
    asked for and gives it back if none comes, so a worker never runs more than its limit.
    """

    def __init__(
        self,
        client: Client,
        worker_id: str,
        budget: TrialBudget,
        heartbeat_seconds: float,
        say: Callable[[str], None],
        ticker: Ticker | None = None,
    ) -> None:
        self._client = client
        self._worker_id = worker_id
        self._budget = budget
        self._every = heartbeat_seconds
        self._say = say
        self._ticker = ticker or process_ticker()
        self._pending: _Once | None = None
        self._held: HeldLease | None = None
        self._unsupported = False

    def ask(self, where: Mapping[str, Any], study_id: int) -> None:
        """Claims a trial of ``study_id`` to hold ahead, in the background, unless one is held
        or on its way already, or the budget is spent."""
        if self._unsupported or self._pending is not None or self._held is not None:
            return
        if not self._budget.take():
            return
        body = {**where, "study_id": study_id}

        def claim() -> Reply | None:
            try:
                return self._client.claim(self._worker_id, **body, ahead=True)
            except ApiError as e:
                if e.status != 422:
                    raise
                # A server older than `ahead` refuses the field: run as without --prefetch.
                self._unsupported = True
                self._say(f"the server holds no trials ahead ({e.message}): --prefetch is off")
                return None

        self._start(claim, asked=True)

    def send(
        self,
        complete: Callable[[Mapping[str, Any] | None], Reply | None],
        where: Mapping[str, Any] | None,
        study_id: int,
    ) -> None:
        """Sends a completion in the background (``complete(claim_next)``: the reply or None
        when it was refused); with ``where``, and the budget allowing, it also claims a trial
        of ``study_id`` to hold ahead. Call it only with nothing held or on its way."""
        assert self._pending is None and self._held is None
        asked = where is not None and self._budget.take()
        claim_next = {**where, "study_id": study_id, "ahead": True} if asked and where else None

        def call() -> Reply | None:
            out = complete(claim_next)
            return out.get("next") if out is not None else None

        self._start(call, asked)

    def take(self) -> ClaimedJob | None:
        """The trial held ahead, its lease no longer beaten here (the caller starts it now):
        waits for a request on its way. None if there is none, or its lease was lost."""
        self._wait()
        held, self._held = self._held, None
        if held is None:
            return None
        held.__exit__(None, None, None)
        if held.lost:
            self._budget.give_back()
            self._say(f"trial {held.claim['number']} held ahead: lease lost; dropping it")
            return None
        return held.claim

    def close(self, why: str) -> None:
        """Hands a trial held ahead back to the queue (the worker is leaving, or cannot run
        its study), after the request on its way."""
        try:
            claim = self.take()
        except Interrupted:
            return  # a signal while the server could not be reached: nothing came
        except Exception as e:  # the request on its way failed: it holds nothing
            self._say(f"the last request in the background failed: {e}")
            return
        if claim is None:
            return
        self._budget.give_back()
        try:
            self._client.release(claim["id"], self._worker_id, claim["attempt"], why)
        except Exception as e:  # its lease then runs out, and the trial is retried
            self._say(f"trial {claim['number']} held ahead: not handed back ({e})")
            return
        self._say(f"trial {claim['number']} (held ahead) handed back to the queue ({why})")

    def _start(self, call: Callable[[], Reply | None], asked: bool) -> None:
        def request() -> Reply | None:
            try:
                reply = call()
            except BaseException:
                if asked:
                    self._budget.give_back()
                raise
            claim = reply.get("trial") if reply is not None else None
            if claim is None:
                if asked:
                    self._budget.give_back()
                return None
            held = HeldLease(self._client, self._worker_id, claim, self._every, self._ticker)
            self._held = held.__enter__()
            return reply

        self._pending = _Once(request)
        self._ticker.add(self._pending)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.wait()
        finally:
            self._ticker.remove(pending)
