"""``hpsearch worker``: checks the devices and entry points, then runs one claim loop
(:class:`workers.loop.Worker`) per slot: in this process when there is one slot, else in one
child process per slot, which this one supervises and passes signals to."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import replace
from types import FrameType
from typing import Any

from hpsearch.client import ApiError, Client
from hpsearch.commands import CommandError, parse_prefix
from workers.custom import EntryPointError, check_importable
from workers.devices import DeviceError, slots, worker_devices
from workers.loop import TrialBudget, Worker, WorkerOptions


def main(opts: WorkerOptions) -> int:
    """``hpsearch worker``: checks the devices and entry points, then runs one claim loop per
    slot (in this process when there is one slot)."""
    _configure_logging()
    try:
        devices = worker_devices(opts.device, opts.gpus)
        worker_slots = slots(devices, opts.concurrency)
        check_importable(opts.allow)
        for prefix in opts.allow_commands:
            parse_prefix(prefix)
        check_study(opts)
    except (DeviceError, EntryPointError, CommandError, StudyError) as e:
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


class StudyError(ValueError):
    """``--study`` names a study the server does not have."""


def check_study(opts: WorkerOptions) -> None:
    """A worker bound to a study that does not exist would wait for nothing: say so now."""
    if opts.study_id is None:
        return
    say = logging.getLogger("hpsearch.worker").info
    with Client(opts.server, token=opts.token, on_retry=say) as client:
        try:
            client.study(opts.study_id)
        except ApiError as e:
            if e.status == 404:
                raise StudyError(f"--study {opts.study_id}: {e.message}") from None
            # A token that may not read studies (403) claims anyway; the claims will tell.


def _supervise(opts: WorkerOptions, worker_slots: list[str], budget: TrialBudget) -> int:
    """Starts one child process per slot, forwards SIGTERM/SIGINT to them as SIGTERM, and
    waits for all of them; the exit code is the worst of theirs."""
    # A fork server that has imported the claim loop once forks each slot from it: a spawned
    # slot imports it all again, which took most of a 16-slot worker's 25 s start on a 2-core
    # machine. The server is a fresh process (no CUDA state, no threads), so forking from it
    # is as safe as spawning.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["workers.loop"])
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
    # A slot killed by a signal (a negative exit code) counts as a failure (1); a slot that
    # cannot run its study says so with 2, as a one-slot worker does.
    return max((child.exitcode if child.exitcode >= 0 else 1) for child in children)


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
