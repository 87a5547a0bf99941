"""The worker process: claim a trial over HTTP, train it, report, repeat.

A worker never touches the database: it needs only the server's address (and a token). While
a trial trains, a heartbeat thread extends its lease, so an epoch longer than the lease does not
lose the trial; a worker that dies stops heartbeating and the server re-queues its trial.

A worker runs one trial per *slot*: one slot per device, ``--concurrency`` slots per device.
Several slots run as child processes (spawned, one claim loop each, all under the worker's id),
not threads: torch's global random state is per process, so a trial stays reproducible from its
seed whatever runs beside it, and small models do not queue behind one GIL.

Signals: the first SIGTERM/SIGINT lets each running trial finish its epoch, then hands it back
to the queue (or completes it, if that was its last epoch); a second one hands it back at once.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from types import FrameType
from typing import Any

from hpsearch.client import ApiError, Client, ServerUnreachable
from workers.checkpoints import ServerCheckpoints
from workers.custom import EntryPointError, EntryPointNotAllowed, check_importable, run_custom
from workers.devices import DeviceError, bind, slots, worker_devices
from workers.final_evaluation import run_final_evaluation
from workers.heartbeat import Heartbeat
from workers.progress import Progress

log = logging.getLogger("hpsearch.worker")


@dataclass
class WorkerOptions:
    server: str
    study_id: int | None = None
    device: str | None = None
    """``--device`` as given (None: the CPU); in a slot, the slot's device."""
    gpus: str | None = None
    concurrency: int = 1
    allow: tuple[str, ...] = ()
    """Custom entry points (``module:function``) this worker may run."""
    threads: int | None = None
    """torch intra-op threads per trial (default: OMP_NUM_THREADS, else 1)."""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    keep_alive: bool = False
    poll_seconds: float = 1.0
    heartbeat_seconds: float = 10.0
    max_trials: int | None = None
    token: str | None = None
    quiet: bool = False
    devices: tuple[str, ...] = ()
    """Every device of the worker, as told to the server with each claim."""
    slot: str | None = None
    """The slot's label when the worker runs several trials at once."""
    pack: int = 1
    """Train up to this many trials of one study at once as one packed model."""


class HandBackNow(BaseException):
    """Raised in the training thread by a second signal: hand the trial back without waiting
    for the epoch to end. A BaseException so that no ``except Exception`` in training code
    swallows it."""


class TrialBudget:
    """``--max-trials``, shared by all the slots of a worker (a counter in shared memory)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._taken = multiprocessing.get_context("spawn").Value("i", 0)

    def take(self) -> bool:
        if self.limit is None:
            return True
        with self._taken.get_lock():
            if self._taken.value >= self.limit:
                return False
            self._taken.value += 1
            return True

    def give_back(self) -> None:
        if self.limit is not None:
            with self._taken.get_lock():
                self._taken.value -= 1


class _Lease(Heartbeat):
    """The worker's view of one claimed trial: heartbeats, and whether to stop early."""

    def __init__(self, client: Client, opts: WorkerOptions, claim: dict[str, Any]) -> None:
        super().__init__(opts.heartbeat_seconds)
        self.client = client
        self.opts = opts
        self.trial_id: int = claim["trial_id"]
        self.attempt: int = claim["attempt"]
        self.stop_reason: str | None = None
        self.lost = False

    def beat(self) -> None:
        ack = self.client.heartbeat(self.trial_id, self.opts.worker_id, self.attempt)
        if ack["should_stop"]:
            self.stop_reason = ack["reason"]

    def on_lost(self) -> None:
        self.lost = True


class Worker:
    """One claim loop: claims a trial, trains it on ``opts.device``, reports, repeats."""

    def __init__(
        self,
        opts: WorkerOptions,
        train: Callable[..., Any] | None = None,
        budget: TrialBudget | None = None,
    ) -> None:
        self.opts = opts
        self.device = opts.device or "cpu"
        self.client = Client(opts.server, token=opts.token)
        self.stopping = False
        self._handing_back = False
        self._wake = threading.Event()
        self._train = train
        self.budget = budget or TrialBudget(opts.max_trials)
        self.progress = Progress(label=opts.slot, quiet=opts.quiet)
        self.trials_run = 0

    def install_signal_handlers(self, *, sigint: bool = True) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if not self.stopping:
                self.stopping = True
                self._wake.set()
                self._say(
                    f"signal {signum}: handing back the current trial after this epoch "
                    "(signal again to hand it back now)"
                )
            elif not self._handing_back:
                raise HandBackNow

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal if sigint else signal.SIG_IGN)

    def run(self) -> int:
        host = socket.gethostname()
        devices = list(self.opts.devices or (self.device,))
        self._say(f"worker {self.opts.worker_id} on {self.device}, server {self.opts.server}")
        try:
            while not self.stopping:
                if not self.budget.take():
                    break
                reply = self.client.claim(self.opts.worker_id, host, devices, self.opts.study_id)
                claim = reply["trial"]
                if claim is None:
                    self.budget.give_back()
                    if not reply["open_studies"] and not self.opts.keep_alive:
                        self._say("no study has work left: exiting")
                        break
                    self._wake.wait(self.opts.poll_seconds)
                    continue
                if claim.get("kind") == "evaluate_test":
                    self.run_final_evaluation(claim)
                elif self.opts.pack > 1 and self._train is None and _packable(claim):
                    # run_pack counts every trial it ran, this one included.
                    self.trials_run += _run_pack(self, claim, self.opts.pack) - 1
                else:
                    self.run_trial(claim)
                self.trials_run += 1
        except HandBackNow:
            pass  # a second signal between trials: nothing is held, just leave
        finally:
            self.client.close()
        return 0

    def run_final_evaluation(self, claim: dict[str, Any]) -> None:
        run_final_evaluation(
            self.client,
            claim,
            worker_id=self.opts.worker_id,
            device=self.device,
            heartbeat_seconds=self.opts.heartbeat_seconds,
            threads=self.opts.threads,
            say=self._say,
        )

    def run_trial(self, claim: dict[str, Any]) -> None:
        number = claim["number"]
        with _Lease(self.client, self.opts, claim) as lease:
            if self.stopping:  # the signal came while the claim was on its way
                self._release(lease, "worker shutting down")
                return
            self._say(
                f"trial {number} (study {claim['study_id']}, attempt {claim['attempt']}): "
                f"{_short(claim['params'])}"
            )
            try:
                result = self._train_one(claim, lease)
            except HandBackNow:
                self._release(lease, "worker interrupted")
                return
            except EntryPointNotAllowed as e:
                self._say(f"trial {number} refused: {e}")
                self._fail(lease, str(e))
                return
            except ApiError as e:
                if e.status == 409:
                    self._say(f"trial {number}: lease lost ({e.message}); dropping it")
                    return
                self._fail(lease, traceback.format_exc())
                return
            except Exception:
                error = traceback.format_exc()
                self._say(f"trial {number} failed:\n{error}")
                self._fail(lease, error)
                return
            if lease.lost:
                self._say(f"trial {number}: lease lost; dropping its result")
                return
            if self.stopping and result.stopped_early and lease.stop_reason is None:
                self._release(lease, "worker shutting down")
                return
            self._complete(lease, number, result)

    def _train_one(self, claim: dict[str, Any], lease: _Lease) -> Any:
        """Runs the claimed trial's trainer with a report callback; returns its result
        (``.metrics``, ``.stopped_early``)."""
        number, task = claim["number"], claim["task"]
        epochs = int(task.get("epochs", 0))

        def report(step: int, metrics: Mapping[str, float]) -> bool:
            sent = _json_metrics(metrics)
            ack = self.client.report(lease.trial_id, self.opts.worker_id, lease.attempt, step, sent)
            self.progress.epoch(number, step, epochs, sent)
            if ack["should_stop"]:
                lease.stop_reason = ack["reason"]
            if lease.stop_reason and not self.stopping:
                self._say(f"trial {number} stops at step {step}: {lease.stop_reason}")
            return bool(lease.stop_reason or self.stopping)

        train = self._trainer_for(task, number, lease)
        return train(claim["params"], task, report, device=self.device, seed=number)

    def _trainer_for(
        self, task: Mapping[str, Any], number: int, lease: _Lease
    ) -> Callable[..., Any]:
        if self._train is not None:
            return self._train
        if task.get("trainer") == "custom":
            return partial(
                run_custom,
                allowed=self.opts.allow,
                number=number,
                should_stop=lambda: self.stopping or lease.stop_reason is not None,
            )
        # Checkpoints go to the server's artifact store, as this lease's holder; a re-queued
        # trial or a fork finds its checkpoint there and resumes after its epoch.
        checkpoints = ServerCheckpoints(
            self.client, lease.trial_id, self.opts.worker_id, lease.attempt, self._say
        )
        return partial(_builtin_train(self.device, self.opts.threads), checkpoints=checkpoints)

    def _complete(self, lease: _Lease, number: int, result: Any) -> None:
        pruned = bool(result.stopped_early)
        out = self._send(
            lambda: self.client.complete(
                lease.trial_id,
                self.opts.worker_id,
                lease.attempt,
                _json_metrics(result.metrics),
                pruned,
            )
        )
        if out is not None:
            verdict = "pruned" if pruned else ("feasible" if out["feasible"] else "INFEASIBLE")
            self._say(f"trial {number} {out['state']}: value={_num(out['value'])} {verdict}")

    def _fail(self, lease: _Lease, error: str) -> None:
        self._send(
            lambda: self.client.fail(lease.trial_id, self.opts.worker_id, lease.attempt, error)
        )

    def _release(self, lease: _Lease, why: str) -> None:
        self._handing_back = True  # a further signal must not cut the hand-back short
        out = self._send(
            lambda: self.client.release(lease.trial_id, self.opts.worker_id, lease.attempt, why)
        )
        if out is not None:
            self._say(f"trial {out['number']} handed back to the queue ({why})")

    def _send(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Sends a trial's outcome; if the server refuses or cannot be reached, the lease
        runs out on the server and the trial is queued again, so the worker goes on."""
        try:
            return call()
        except ApiError as e:
            if e.status == 409:
                self._say(f"server refused the result: {e.message}")
                return None
            raise
        except ServerUnreachable as e:
            self._say(f"could not send the result ({e}); the server will re-queue the trial")
            return None

    def _say(self, text: str) -> None:
        self.progress.say(text)


def _builtin_train(device: str, threads: int | None) -> Callable[..., Any]:
    # torch is imported only when a trial runs, so `hpsearch worker --help` is instant.
    import torch

    from workers.training import train_trial

    torch.set_num_threads(threads or int(os.environ.get("OMP_NUM_THREADS", "1")))
    bind(device)
    return train_trial


def _json_metrics(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    # JSON has no NaN or infinity; the server records a missing value as "not a number".
    return {
        k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in metrics.items()
    }


def _short(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in params.items())


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(opts: WorkerOptions) -> int:
    """``hpsearch worker``: checks the devices and entry points, then runs one claim loop per
    slot (in this process when there is one slot)."""
    _configure_logging()
    try:
        devices = worker_devices(opts.device, opts.gpus)
        worker_slots = slots(devices, opts.concurrency)
        check_importable(opts.allow)
    except (DeviceError, EntryPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Threads per trial: small models gain little from more than one, and the slots of a
    # worker (or several workers on one box) must not oversubscribe its cores.
    if opts.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    opts = replace(opts, devices=tuple(devices))
    budget = TrialBudget(opts.max_trials)
    if len(worker_slots) == 1:
        worker = Worker(replace(opts, device=worker_slots[0]), budget=budget)
        worker.install_signal_handlers()
        return worker.run()
    return _supervise(opts, worker_slots, budget)


def _supervise(opts: WorkerOptions, worker_slots: list[str], budget: TrialBudget) -> int:
    """Starts one child process per slot, forwards SIGTERM/SIGINT to them as SIGTERM, and
    waits for all of them; the exit code is the worst of theirs."""
    ctx = multiprocessing.get_context("spawn")
    children: list[Any] = []
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    per_device = opts.concurrency > 1
    for i, device in enumerate(worker_slots):
        label = f"{device}#{i % opts.concurrency}" if per_device else device
        child = ctx.Process(
            target=_slot_main,
            args=(replace(opts, device=device, slot=label), budget),
            name=f"hpsearch-worker-{label}",
        )
        child.start()
        children.append(child)
        if stopping.is_set() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join()
    return 0 if all(child.exitcode == 0 for child in children) else 1


def _slot_main(opts: WorkerOptions, budget: TrialBudget) -> None:
    # The parent turns the terminal's Ctrl-C (sent to the whole process group) into one
    # SIGTERM per slot; taking SIGINT here as well would count it twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging()
    worker = Worker(opts, budget=budget)
    worker.install_signal_handlers(sigint=False)
    sys.exit(worker.run())


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # httpx logs every request at INFO: one line per heartbeat and epoch would bury the progress.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _packable(claim: dict[str, Any]) -> bool:
    # workers.packing imports this module; importing it here, when first needed, breaks the cycle.
    from workers.packing import packable

    return packable(claim)


def _run_pack(worker: Worker, claim: dict[str, Any], size: int) -> int:
    from workers.packing import run_pack

    return run_pack(worker, claim, size)
