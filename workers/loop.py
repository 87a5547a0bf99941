"""The worker process: claim a trial over HTTP, train it, report, repeat.

A worker never touches the database: it needs only the server's address (and a token). While
a trial trains, a heartbeat thread extends its lease, so an epoch longer than the lease does not
lose the trial; a worker that dies stops heartbeating and the server re-queues its trial.

A worker runs one trial per *slot*: one slot per device, ``--concurrency`` slots per device.
Several slots run as child processes (spawned, one claim loop each, all under the worker's id),
not threads: torch's global random state is per process, so a trial stays reproducible from its
seed whatever runs beside it, and small models do not queue behind one GIL.

Per-epoch reports may be held back and sent together (:mod:`workers.reports`), as the claim
allows; a trial's completion carries the steps still held and, in the same request, claims the
worker's next trial.

Signals: the first SIGTERM/SIGINT lets each running trial finish its epoch, then hands it back
to the queue (or completes it, if that was its last epoch); a second one hands it back at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shlex
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError, Client, Interrupted, ServerUnreachable
from hpsearch.commands import parse_prefix
from hpsearch.states import TrialState
from hpsearch.tasks import COMMAND, CUSTOM
from workers.ahead import Ahead
from workers.command import CommandFailed, CommandNotAllowed, run_command, suggested_prefix
from workers.custom import EntryPointNotAllowed, run_custom
from workers.devices import bind
from workers.final_evaluation import run_final_evaluation
from workers.lease import Lease
from workers.outcomes import HandBackNow, TrainingDiverged, number_text, setup_problem, short
from workers.packing import packable, run_pack
from workers.progress import Progress
from workers.schedule import follow_schedule

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
    allow_commands: tuple[str, ...] = ()
    """``--allow-command`` as given: the argv prefixes of the programs this worker may run."""
    threads: int | None = None
    """torch intra-op threads per trial (default: OMP_NUM_THREADS, else 1)."""
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    keep_alive: bool = False
    idle_exit: float = 60.0
    """Without ``keep_alive``: exit once nothing was claimable for this worker this long."""
    labels: dict[str, str] = field(default_factory=dict)
    """``--label key=value``: matched against a study's ``requires.labels``."""
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
    prefetch: bool = False
    """``--prefetch``: each slot holds its next trial ahead (:mod:`workers.ahead`)."""


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


class Worker:
    """One claim loop: claims a trial, trains it on ``opts.device``, reports, repeats.

    A trial's run, here (:meth:`run_trial`) or in a pack (:mod:`workers.packing`), goes
    through the same public steps: :meth:`lease_for` the claim, :meth:`reporter` for its
    epochs, then one of :meth:`complete`, :meth:`fail` or :meth:`release`; :meth:`say` shows
    what happened.
    """

    def __init__(
        self,
        opts: WorkerOptions,
        train: Callable[..., Any] | None = None,
        budget: TrialBudget | None = None,
    ) -> None:
        self.opts = opts
        self.device = opts.device or "cpu"
        # Set by a signal: a request being retried (an unreachable server) gives up at once.
        self._interrupt = threading.Event()
        self.client = Client(
            opts.server, token=opts.token, on_retry=self.say, interrupt=self._interrupt
        )
        self.stopping = False
        self._handing_back = False
        self._wake = threading.Event()
        self._train = train
        self.budget = budget or TrialBudget(opts.max_trials)
        self.progress = Progress(label=opts.slot, quiet=opts.quiet)
        self.trials_run = 0
        # Checked at the worker's start (workers/main.py): here they parse.
        self.commands = [parse_prefix(p) for p in opts.allow_commands]
        # Studies this worker could not set up (by id, why): it claims none of their trials.
        self.refused: dict[int, str] = {}
        # Why the server calls this worker unhealthy (its last trials failed): it stops.
        self.unhealthy: str | None = None
        # A packed slot claims its partners itself: it holds nothing ahead.
        self.ahead = (
            Ahead(self.client, opts.worker_id, self.budget, opts.heartbeat_seconds, self.say)
            if opts.prefetch and opts.pack == 1
            else None
        )

    def install_signal_handlers(self, *, sigint: bool = True) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if not self.stopping:
                self.stopping = True
                self._wake.set()
                self._interrupt.set()
                self.say(
                    f"signal {signum}: handing back the current trial after this epoch "
                    "(signal again to hand it back now)"
                )
            elif not self._handing_back:
                raise HandBackNow

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal if sigint else signal.SIG_IGN)

    def run(self) -> int:
        where: dict[str, Any] = {
            "host": socket.gethostname(),
            "devices": list(self.opts.devices or (self.device,)),
            "study_id": self.opts.study_id,
            "entry_points": list(self.opts.allow),
            "commands": [list(p) for p in self.commands],
        }
        if self.opts.labels:
            where["labels"] = dict(self.opts.labels)
        self.say(f"worker {self.opts.worker_id} on {self.device}, server {self.client.server}")
        # A claim's reply: from POST /claims, or from the last completion (its claim_next).
        # Either way the budget was taken for it, and is given back if it holds no trial.
        reply: dict[str, Any] | None = None
        said: set[tuple[int, str]] = set()
        idle = _Idle(self.opts.idle_exit, self.say)
        try:
            while True:
                if self.unhealthy is not None:
                    self.say(f"this worker is unhealthy ({self.unhealthy}): it stops claiming")
                    return 1
                if self.opts.study_id is not None and self.opts.study_id in self.refused:
                    return 1  # bound to a study it cannot set up: said when it was refused
                if self.refused:
                    where["refused_studies"] = sorted(self.refused)
                held = self.ahead.take() if self.ahead is not None and reply is None else None
                if held is not None:  # the last trial ended without a completion (it failed)
                    reply = {"trial": held, "open_studies": True}
                if reply is None:
                    if self.stopping or not self.budget.take():
                        break
                    reply = self.client.claim(self.opts.worker_id, **where)
                claim, open_studies = reply["trial"], reply["open_studies"]
                passed_over = reply.get("passed_over", [])
                waiting = reply.get("waiting", [])
                reply = None
                if claim is None:
                    self.budget.give_back()
                    if self._never_runs(passed_over, said):
                        return 2
                    if not open_studies and not self.opts.keep_alive:
                        self.say("no study has work left: exiting")
                        break
                    if idle.over(waiting) and not self.opts.keep_alive:
                        break
                    self._wake.wait(idle.next_wait(self.opts.poll_seconds))
                    continue
                idle.reset()
                # A claim in hand is run even when the worker is stopping: run_trial hands it
                # back at once.
                reply = self._run_claim(claim, where)
                self.trials_run += 1
        except HandBackNow:
            pass  # a second signal between trials: nothing is held, just leave
        except Interrupted:
            pass  # a signal while the server could not be reached: nothing is held
        finally:
            if self.ahead is not None:
                self._handing_back = True  # a further signal must not cut the hand-back short
                self.ahead.close("worker shutting down")
            self._say_goodbye()
            self.client.close()
        return 0

    def _say_goodbye(self) -> None:
        """Tells the server this worker is leaving, so its page says so; best effort, once."""
        # Never seen (it claimed nothing), or the server is gone: it will show lost.
        with contextlib.suppress(ApiError, ServerUnreachable, Interrupted, HandBackNow):
            self.client.worker_exited(self.opts.worker_id)

    def _never_runs(self, passed_over: list[dict[str, Any]], said: set[tuple[int, str]]) -> bool:
        """Says (once each) which studies a claim passed over, and why (an ``--allow`` or
        ``--allow-command``, a device, labels it lacks); True when the worker is bound to such
        a study (``--study``), so it will never run a thing."""
        for p in passed_over:
            study_id = p["study_id"]
            if p.get("entry_point") or p.get("command"):
                _, why, flag = _needs(p)
                bound = f"study {study_id} runs {why}, which this worker does not allow: "
                bound += f"start it with {flag}"
                passing = f"its trials run {why} (a worker started with {flag} runs them)"
            else:
                why = p.get("needs") or "what this worker lacks"
                bound = f"study {study_id} needs a worker with {why}; this one has not"
                passing = f"it needs a worker with {why}"
            if self.opts.study_id == study_id:
                self.say(bound)
                return True
            if (study_id, why) not in said:
                said.add((study_id, why))
                self.say(f"passing over study {study_id}: {passing}")
        return False

    def _run_claim(self, claim: ClaimedJob, where: dict[str, Any]) -> dict[str, Any] | None:
        """Runs one claimed job; returns the next claim's reply when its completion brought
        one (only a trial run alone asks: a pack claims its partners itself)."""
        if claim.get("kind") == "evaluate_test":
            self.run_final_evaluation(claim)
        elif self.opts.pack > 1 and self._train is None and packable(claim):
            # run_pack counts every trial it ran, this one included.
            self.trials_run += run_pack(self, claim, self.opts.pack) - 1
        else:
            return self.run_trial(claim, claim_next=where)
        return None

    def run_final_evaluation(self, claim: ClaimedJob) -> None:
        run_final_evaluation(
            self.client,
            claim,
            worker_id=self.opts.worker_id,
            device=self.device,
            heartbeat_seconds=self.opts.heartbeat_seconds,
            threads=self.opts.threads,
            say=self.say,
        )

    def run_trial(
        self, claim: ClaimedJob, claim_next: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Trains a claimed trial and sends its outcome.

        With ``claim_next`` (``host``, ``devices``, ``study_id``, ``entry_points``: where and
        what the worker claims), the completion also claims the worker's next trial when the
        worker is not stopping and its budget allows one; returns that claim's reply, or None
        (claim as usual).
        """
        number = claim["number"]
        with self.lease_for(claim) as lease:
            if self.stopping:  # the signal came while the claim was on its way
                self.release(lease, "worker shutting down")
                return None
            self.say(
                f"study {claim['study_id']} trial {number} (attempt {claim['attempt']}): "
                f"{short(claim['params'])}"
            )
            if self.ahead is not None and claim_next is not None:
                self.ahead.ask(claim_next, claim["study_id"])
            try:
                result = self._train_one(claim, lease)
            except HandBackNow:
                self.release(lease, "worker interrupted")
                return None
            except TrainingDiverged as e:
                self.say(f"trial {number} diverged: {e}")
                result = e.result(claim["task"])
            except (EntryPointNotAllowed, CommandNotAllowed) as e:
                self.say(f"trial {number} refused: {e}")
                self.fail(lease, str(e))
                return None
            except ApiError as e:
                if e.status == 409:
                    self.say(f"trial {number}: lease lost ({e.message}); dropping it")
                    return None
                self.fail(lease, traceback.format_exc())
                return None
            except CommandFailed as e:
                self.say(f"trial {number} failed: {e}")
                self.fail(lease, str(e))
                return None
            except Exception as e:
                problem = setup_problem(e)
                if problem is not None:  # the worker's, not the trial's: another may run it
                    self._refuse_study(lease, claim, problem)
                    return None
                error = traceback.format_exc()
                self.say(f"trial {number} failed:\n{error}")
                lease.log.write(error)
                self.fail(lease, error)
                return None
            if lease.lost:
                self.say(f"trial {number}: lease lost; dropping its result")
                return None
            if self.stopping and lease.stop_reason is None and _cut_short(result, claim):
                self.release(lease, "worker shutting down")
                return None
            return self.complete(lease, number, result, claim_next)

    def _train_one(self, claim: ClaimedJob, lease: Lease) -> Any:
        """Runs the claimed trial's trainer with a report callback; returns its result
        (``.metrics``, ``.stopped_early``)."""
        number, task = claim["number"], claim["task"]
        report = self.reporter(lease, number, int(task.get("epochs", 0)))
        train = self._trainer_for(task, number, lease)
        schedule = claim.get("schedule")
        if schedule:  # a replay: the trainer runs once per stretch
            train = partial(follow_schedule, train, schedule)
        if task.get("trainer") == COMMAND and self._train is None:
            # The program's own output is the log; nothing of this process's.
            return train(claim["params"], task, report, device=self.device, seed=number)
        with lease.log.capture():
            return train(claim["params"], task, report, device=self.device, seed=number)

    def reporter(
        self, lease: Lease, number: int, epochs: int
    ) -> Callable[[int, Mapping[str, float]], bool]:
        """A trial's report callback: hands each epoch's metrics to the lease's reports (sent
        now or held back), shows the epoch, and says whether to stop (as far as is known:
        a held-back step gets no new ack)."""

        def report(step: int, metrics: Mapping[str, float]) -> bool:
            sent = _json_metrics(metrics)
            reason = lease.reports.add(step, sent)
            self.progress.epoch(number, step, epochs, sent)
            if reason and not self.stopping:
                self.say(f"trial {number} stops at step {step}: {reason}")
            return bool(reason or self.stopping)

        return report

    def lease_for(self, claim: ClaimedJob) -> Lease:
        """The lease of a claimed trial: entered, it heartbeats until the trial is ended."""
        return Lease(self.client, self.opts.worker_id, claim, self.opts.heartbeat_seconds)

    def _trainer_for(
        self, task: Mapping[str, Any], number: int, lease: Lease
    ) -> Callable[..., Any]:
        if self._train is not None:
            return self._train

        def should_stop() -> bool:
            return self.stopping or lease.stop_reason is not None

        if task.get("trainer") == CUSTOM:
            return partial(
                run_custom,
                allowed=self.opts.allow,
                number=number,
                should_stop=should_stop,
                checkpoints=lease.checkpoints(self.say),
            )
        if task.get("trainer") == COMMAND:
            return partial(
                run_command,
                allowed=self.commands,
                trial_id=lease.trial_id,
                number=number,
                checkpoints=lease.checkpoints(self.say),
                log=lease.log.write,
                should_stop=should_stop,
            )
        train = _builtin_train(self.device, self.opts.threads)
        return partial(train, checkpoints=lease.checkpoints(self.say))

    def complete(
        self,
        lease: Lease,
        number: int,
        result: Any,
        claim_next: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Sends the trial's outcome with the steps still held back; see run_trial for
        ``claim_next`` and what is returned."""
        pruned = bool(result.stopped_early)
        lease.log.close()
        steps = lease.reports.take()
        metrics = _json_metrics(result.metrics)

        held = self.ahead.take() if self.ahead is not None and claim_next is not None else None

        def send(next_where: Mapping[str, Any] | None) -> dict[str, Any] | None:
            """Sends the completion (claiming with ``next_where``); shows what came back."""
            out = self._send(
                lambda: self.client.complete(
                    lease.trial_id,
                    self.opts.worker_id,
                    lease.attempt,
                    metrics,
                    pruned,
                    steps=steps,
                    claim_next=next_where,
                    started=held["id"] if held is not None else None,
                )
            )
            self._said_outcome(out, number, pruned)
            return out

        if self.ahead is not None and held is not None:
            # Start the held trial now; this completion (claiming the one after it) goes in
            # the background and is waited for when that trial ends.
            self.ahead.send(send, None if self.stopping else claim_next, held["study_id"])
            return {"trial": held, "open_studies": True}
        # The next trial's budget is taken now, as for POST /claims; the run loop gives it
        # back if the claim finds no trial, and so does this method if none was made.
        asked = claim_next is not None and not self.stopping and self.budget.take()
        out = send(claim_next if asked else None)
        following: dict[str, Any] | None = out.get("next") if asked and out is not None else None
        if asked and following is None:  # not answered, or a server without claim_next
            self.budget.give_back()
        return following

    def _said_outcome(self, out: dict[str, Any] | None, number: int, pruned: bool) -> None:
        """Notes what the server said of a completion (the worker's health) and shows it."""
        self._note_health(out)
        if (
            out is not None and out["state"] == TrialState.FAILED
        ):  # e.g. it never reported the objective
            self.say(f"trial {number} failed: {out.get('error')}")
        elif out is not None:
            verdict = "pruned" if pruned else ("feasible" if out["feasible"] else "INFEASIBLE")
            value = "diverged" if out.get("diverged") else number_text(out["value"])
            self.say(
                f"study {out['study_id']} trial {number} {out['state']}: value={value} {verdict}"
            )

    def _refuse_study(self, lease: Lease, claim: ClaimedJob, problem: str) -> None:
        """Hands back a trial this worker could not even set up, and claims no more of its
        study."""
        study_id = claim["study_id"]
        self.refused[study_id] = problem
        self.say(
            f"study {study_id}: {problem}; handing trial {claim['number']} back, and this "
            f"worker claims no more of study {study_id}"
        )
        self.release(lease, f"setup error on worker {self.opts.worker_id}: {problem}")
        if self.ahead is not None:  # a trial held ahead is of the same study
            self.ahead.close(f"setup error on worker {self.opts.worker_id}: {problem}")
        self._handing_back = False  # the worker goes on: a second signal may cut it short again

    def fail(self, lease: Lease, error: str) -> None:
        """Ends the leased trial as failed with ``error``, after its held-back reports."""
        lease.log.close()
        self._send_held(lease)
        out = self._send(
            lambda: self.client.fail(lease.trial_id, self.opts.worker_id, lease.attempt, error)
        )
        self._note_health(out)

    def _note_health(self, out: dict[str, Any] | None) -> None:
        if out is not None and out.get("worker_unhealthy"):
            self.unhealthy = str(out["worker_unhealthy"])

    def release(self, lease: Lease, why: str) -> None:
        """Hands the leased trial back to the queue (its held-back reports first), saying
        ``why``; a further signal does not cut this short."""
        self._handing_back = True  # a further signal must not cut the hand-back short
        lease.log.close()
        self._send_held(lease)
        out = self._send(
            lambda: self.client.release(lease.trial_id, self.opts.worker_id, lease.attempt, why)
        )
        if out is not None:
            self.say(f"trial {out['number']} handed back to the queue ({why})")

    def _send_held(self, lease: Lease) -> None:
        why = lease.send_held()
        if why is not None:
            self.say(f"trial {lease.trial_id}: held-back reports not sent: {why}")

    def _send(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Sends a trial's outcome; if the server refuses or cannot be reached, the lease
        runs out on the server and the trial is queued again, so the worker goes on."""
        try:
            return call()
        except ApiError as e:
            if e.status == 409:
                self.say(f"server refused the result: {e.message}")
                return None
            raise
        except ServerUnreachable as e:
            self.say(f"could not send the result ({e}); the server will re-queue the trial")
            return None

    def say(self, text: str) -> None:
        """Shows a line of the worker's progress."""
        self.progress.say(text)


class _Idle:
    """How long a worker has found nothing to claim; over ``limit`` seconds, it says what it
    waited for (the server's words) and is done."""

    FIRST_WAIT = 0.05

    def __init__(self, limit: float, say: Callable[[str], None]) -> None:
        self.limit = limit
        self._say = say
        self._since: float | None = None
        self._wait = self.FIRST_WAIT

    def reset(self) -> None:
        self._since = None
        self._wait = self.FIRST_WAIT

    def next_wait(self, longest: float) -> float:
        """How long to wait before claiming again: short at first, doubling up to
        ``longest``. A study's last trials end within moments of each other; a slot whose
        last trial ended first then sees the study end (and exits) within about as long
        as it waited for that, not a whole ``longest`` later, at a few claims per idle
        spell."""
        wait, self._wait = min(self._wait, longest), min(2 * self._wait, longest)
        return wait

    def over(self, waiting: list[str]) -> bool:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since < self.limit:
            return False
        why = "; ".join(waiting) or "no study has work for this worker"
        self._say(f"nothing to claim for {self.limit:g} s ({why}): exiting (--idle-exit)")
        return True


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


def _needs(passed: Mapping[str, Any]) -> tuple[int, str, str]:
    """A passed-over study as (its id, what its trials run, the flag that allows it)."""
    study_id, command = passed["study_id"], passed.get("command")
    if command:
        prefix = shlex.quote(shlex.join(suggested_prefix(command)))
        return study_id, f"command {shlex.join(command)!r}", f"--allow-command {prefix}"
    entry_point = passed["entry_point"]
    return study_id, f"entry point {entry_point}", f"--allow {entry_point}"


def _cut_short(result: Any, claim: ClaimedJob) -> bool:
    """Whether a trial that ended while the worker shuts down ended before its last epoch:
    a report asked it to stop, or (an entry point that watches ``trial.should_stop``) it
    returned early. Such a trial is handed back, to be resumed from its checkpoint, rather
    than completed with the metrics of an epoch it never meant to end on."""
    epochs = int(claim["task"].get("epochs", 0))
    return bool(result.stopped_early) or result.epochs_run < epochs
