"""The worker process: claim a trial over HTTP, train it, report, repeat.

A worker never touches the database: it needs only the server's address (and a token). While
a trial trains, a heartbeat thread extends its lease, so an epoch longer than the lease does not
lose the trial; a worker that dies stops heartbeating and the server re-queues its trial.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from hpsearch.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("hpsearch.worker")


@dataclass
class WorkerOptions:
    server: str
    study_id: int | None = None
    device: str = "cpu"
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    keep_alive: bool = False
    poll_seconds: float = 1.0
    heartbeat_seconds: float = 10.0
    max_trials: int | None = None
    token: str | None = None
    quiet: bool = False


class _Lease:
    """The worker's view of one claimed trial: heartbeats, and whether to stop early."""

    def __init__(self, client: Client, opts: WorkerOptions, claim: dict[str, Any]) -> None:
        self.client = client
        self.opts = opts
        self.trial_id: int = claim["trial_id"]
        self.attempt: int = claim["attempt"]
        self.stop_reason: str | None = None
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self.opts.heartbeat_seconds):
            try:
                ack = self.client.heartbeat(self.trial_id, self.opts.worker_id, self.attempt)
            except ApiError as e:
                if e.status == 409:
                    self.lost = True
                    return
                log.warning("heartbeat failed: %s", e)
                continue
            except ServerUnreachable as e:
                log.warning("heartbeat failed: %s", e)
                continue
            if ack["should_stop"]:
                self.stop_reason = ack["reason"]


class Worker:
    def __init__(self, opts: WorkerOptions, train: Callable[..., Any] | None = None) -> None:
        self.opts = opts
        self.client = Client(opts.server, token=opts.token)
        self.shutting_down = False
        self._train = train
        self.trials_run = 0

    def install_signal_handlers(self) -> None:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            # Finish the current epoch, hand the trial back, exit: nothing is lost.
            self.shutting_down = True
            self._say(f"signal {signum}: handing back the current trial after this epoch")

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def run(self) -> int:
        host = socket.gethostname()
        self._say(f"worker {self.opts.worker_id} on {self.opts.device}, server {self.opts.server}")
        while not self.shutting_down:
            if self.opts.max_trials is not None and self.trials_run >= self.opts.max_trials:
                break
            reply = self.client.claim(
                self.opts.worker_id, host, [self.opts.device], self.opts.study_id
            )
            claim = reply["trial"]
            if claim is None:
                if not reply["open_studies"] and not self.opts.keep_alive:
                    self._say("no study has work left: exiting")
                    break
                time.sleep(self.opts.poll_seconds)
                continue
            self.run_trial(claim)
            self.trials_run += 1
        self.client.close()
        return 0

    def run_trial(self, claim: dict[str, Any]) -> None:
        train = self._train or _default_train()
        number, epochs = claim["number"], claim["task"].get("epochs", 0)
        self._say(
            f"trial {number} (study {claim['study_id']}, attempt {claim['attempt']}): "
            f"{_short(claim['params'])}"
        )
        with _Lease(self.client, self.opts, claim) as lease:

            def report(step: int, metrics: dict[str, float]) -> bool:
                ack = self.client.report(
                    lease.trial_id, self.opts.worker_id, lease.attempt, step, metrics
                )
                self._progress(number, step, epochs, metrics)
                if ack["should_stop"]:
                    lease.stop_reason = ack["reason"]
                return bool(ack["should_stop"] or lease.stop_reason or self.shutting_down)

            try:
                result = train(
                    claim["params"],
                    claim["task"],
                    report,
                    device=self.opts.device,
                    seed=claim["number"],
                )
            except ApiError as e:
                if e.status == 409:
                    self._say(f"trial {number}: lease lost ({e.message}); dropping it")
                    return
                raise
            except Exception:
                error = traceback.format_exc()
                self._say(f"trial {number} failed:\n{error}")
                self._send(
                    lambda: self.client.fail(
                        lease.trial_id, self.opts.worker_id, lease.attempt, error
                    )
                )
                return
            if self.shutting_down and result.stopped_early and lease.stop_reason is None:
                self._send(
                    lambda: self.client.release(
                        lease.trial_id, self.opts.worker_id, lease.attempt, "worker shutting down"
                    )
                )
                return
            pruned = bool(result.stopped_early)
            out = self._send(
                lambda: self.client.complete(
                    lease.trial_id, self.opts.worker_id, lease.attempt, result.metrics, pruned
                )
            )
            if out is not None:
                verdict = "pruned" if pruned else ("feasible" if out["feasible"] else "INFEASIBLE")
                self._say(f"trial {number} {out['state']}: value={_num(out['value'])} {verdict}")

    def _send(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return call()
        except ApiError as e:
            if e.status == 409:
                self._say(f"server refused the result: {e.message}")
                return None
            raise

    def _progress(self, number: int, step: int, epochs: int, metrics: dict[str, float]) -> None:
        if self.opts.quiet:
            return
        width = 20
        done = int(width * step / epochs) if epochs else width
        bar = "#" * done + "." * (width - done)
        dev = metrics.get("dev_accuracy")
        text = f"  trial {number} [{bar}] epoch {step}/{epochs}"
        if dev is not None:
            text += f" dev_accuracy={dev:.4f}"
        print(text, flush=True)

    def _say(self, text: str) -> None:
        if not self.opts.quiet:
            print(text, flush=True)


def _default_train() -> Callable[..., Any]:
    # torch is imported only when a trial runs, so `hpsearch worker --help` is instant.
    from workers.training import train_trial

    return train_trial


def _short(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in params.items())


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(opts: WorkerOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # One intra-op thread per worker by default: small models gain nothing from more, and
    # several workers on one box must not oversubscribe its cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    worker = Worker(opts)
    worker.install_signal_handlers()
    return worker.run()
