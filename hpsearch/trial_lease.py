"""A trial run in the caller's own process: what ``Study.ask()`` hands out and what
``Study.optimize`` passes to the user's function.

It is the same interface (:class:`TrialLike`) as the ``trial`` a worker passes to a custom
entry point (``workers.custom.Trial``), so one training function serves both. Holding a trial
means holding its lease: a background thread heartbeats it while it is held. A lease the
server took back (the process was suspended past the lease, say) is said by
:class:`~hpsearch.errors.LeaseLost` on the next report or tell, naming the trial.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError, Client, ServerUnreachable
from hpsearch.errors import LeaseLost


@runtime_checkable
class TrialLike(Protocol):
    """What a training function may use of its trial, in a worker or in a notebook."""

    params: dict[str, Any]
    number: int

    @property
    def should_stop(self) -> bool: ...

    def report(
        self, step: int, metrics: Mapping[str, Any] | None = None, /, **named: Any
    ) -> bool: ...

    def save_checkpoint(self, state: Any, step: int | None = None) -> None: ...

    def load_checkpoint(self) -> Any | None: ...


def metrics_of(metrics: Mapping[str, Any] | None, named: Mapping[str, Any]) -> dict[str, float]:
    """``report(step, {"a": 1})`` and ``report(step, a=1)`` alike, as floats (numpy and torch
    scalars included); a value that is not a number is the caller's mistake, named."""
    out: dict[str, float] = {}
    for name, value in {**(metrics or {}), **named}.items():
        if isinstance(value, bool) or not hasattr(value, "__float__"):
            raise TypeError(f"metric {name!r} is {value!r}, not a number")
        out[str(name)] = float(value)
    return out


class StateCodec(Protocol):
    """Checkpoint state to bytes and back (the worker's ``workers.checkpoint_state``: torch's
    format). The study handle hands in :class:`hpsearch.worker_code.CheckpointState`, which
    finds it through an entry point: the core itself never imports torch or the worker."""

    def encode(self, state: Any) -> bytes: ...

    def decode(self, data: bytes, device: str = "cpu") -> Any: ...


class TrialLease:
    """One trial of a study, leased to this process until it is told (completed or failed).

    ``with study.ask() as trial:`` completes it on exit with its last reported metrics, and
    fails it with the traceback when the block raises.
    """

    def __init__(
        self,
        client: Client,
        claimed: ClaimedJob,
        worker_id: str,
        state: StateCodec,
        heartbeat: bool = True,
    ) -> None:
        self._client = client
        self._state = state
        self.id: int = int(claimed["id"])
        """The trial's global id (/api/v1/trials/{id})."""
        self.study_id: int = int(claimed["study_id"])
        self.number: int = int(claimed["number"])
        """The trial's number in its study: users see "study 3 trial 18"."""
        self.attempt: int = int(claimed["attempt"])
        self.params: dict[str, Any] = {**claimed["task"].get("fixed", {}), **claimed["params"]}
        self.task: dict[str, Any] = dict(claimed["task"])
        self.worker_id = worker_id
        self.last_step = 0
        self.last_metrics: dict[str, float] = {}
        self.stop_requested = False
        self.ended = False
        self._lost: str | None = None
        self._done = threading.Event()
        self._heartbeats: threading.Thread | None = None
        if heartbeat:
            every = _heartbeat_interval(claimed.get("lease_expires_at"))
            self._heartbeats = threading.Thread(
                target=self._heartbeat, args=(every,), name=f"heartbeat-{self.id}", daemon=True
            )
            self._heartbeats.start()

    def __repr__(self) -> str:
        return f"<study {self.study_id} trial {self.number} params={self.params}>"

    @property
    def should_stop(self) -> bool:
        """Whether the server wants this trial to end (pruned at a report, stopped by a user,
        or the lease lost): report (or return) soon after it becomes True."""
        return self.stop_requested or self._lost is not None

    def report(self, step: int, metrics: Mapping[str, Any] | None = None, /, **named: Any) -> bool:
        """Sends one step's metrics (``report(3, loss=0.2)`` or ``report(3, {"loss": 0.2})``);
        True asks the caller to stop now (the study's pruner, or a user's stop)."""
        clean = metrics_of(metrics, named)
        ack = self._lease_call(
            "report", self._client.report, self.id, self.worker_id, self.attempt, step, clean
        )
        self.last_step, self.last_metrics = step, clean
        self.stop_requested = self.stop_requested or bool(ack.get("should_stop"))
        return self.stop_requested

    def save_checkpoint(self, state: Any, step: int | None = None) -> None:
        """Keeps ``state`` (what ``torch.save`` writes and ``torch.load(weights_only=True)``
        reads back) as the trial's checkpoint after ``step`` (default: the last reported)."""
        step = self.last_step if step is None else step
        if step < 1:
            raise ValueError("save_checkpoint: report a step first, or give step=N (N >= 1)")
        self._lease_call(
            "save_checkpoint",
            self._client.upload_checkpoint,
            self.id,
            self.worker_id,
            self.attempt,
            step,
            self._state.encode(state),
        )

    def load_checkpoint(self) -> Any | None:
        """The state the last :meth:`save_checkpoint` of this trial kept (on an attempt before
        this one too); None when there is none."""
        data = self._client.download_checkpoint(self.id, self.worker_id, self.attempt)
        if not data:
            return None
        return self._state.decode(data, "cpu")

    # -- ending it (Study.tell) -------------------------------------------------------------

    def complete(self, metrics: Mapping[str, Any] | None = None, pruned: bool = False) -> None:
        """Ends the trial with ``metrics`` (default: its last report's)."""
        final = self.last_metrics if metrics is None else metrics_of(metrics, {})
        self._end(
            "tell",
            self._client.complete,
            self.id,
            self.worker_id,
            self.attempt,
            final,
            pruned=pruned,
        )

    def fail(self, error: str) -> None:
        self._end("tell", self._client.fail, self.id, self.worker_id, self.attempt, error)

    def __enter__(self) -> TrialLease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ended:
            return
        if error is None:
            self.complete(pruned=self.stop_requested and bool(self.last_metrics))
        else:
            self.fail("".join(traceback.format_exception(kind, error, tb)))

    # -- the lease --------------------------------------------------------------------------

    def _end(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        if self.ended:
            raise RuntimeError(f"study {self.study_id} trial {self.number} was already told")
        try:
            self._lease_call(what, call, *args, **kwargs)
        finally:
            self._stop_heartbeats()
        self.ended = True

    def _lease_call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            reply: dict[str, Any] = call(*args, **kwargs)
        except ApiError as e:
            if e.code != "lease_lost":
                raise
            self._lost = e.message
            self._stop_heartbeats()
            self.ended = True
            raise LeaseLost(
                f"{what}: study {self.study_id} trial {self.number} (attempt {self.attempt}) is "
                "no longer leased to this process: its lease expired and the trial went back "
                "to the queue, where another claimer may hold it now; nothing was recorded. "
                f"Server: {e.message}"
            ) from None
        return reply

    def _stop_heartbeats(self) -> None:
        self._done.set()
        thread = self._heartbeats
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _heartbeat(self, every: float) -> None:
        while not self._done.wait(every):
            try:
                ack = self._client.heartbeat(self.id, self.worker_id, self.attempt)
            except ApiError as e:
                if e.code == "lease_lost":
                    self._lost = e.message
                    return
                continue  # anything else: the next beat tries again
            except ServerUnreachable:
                continue
            if ack.get("should_stop"):
                self.stop_requested = True


def _heartbeat_interval(expires: str | None) -> float:
    """A third of the lease the claim gave: two beats may be lost before it expires."""
    if not expires:
        return 10.0
    until = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    lease = (until - datetime.now(UTC)).total_seconds()
    if lease <= 0:  # the server's clock is ahead of ours: beat often, not in a loop
        return 5.0
    return max(0.1, min(lease / 3, 30.0))
