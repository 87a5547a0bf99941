"""The ``command`` trainer: a user's unmodified program, run as a process for each trial.

A study names the program as an argv template (``task.command``); a worker runs it only if
the template starts with an argv prefix the worker's own command line allows
(``hpsearch worker --allow-command "python train.py"``), and only in its working directory
or below (``task.workdir``). Each item is filled on its own and the program is executed
without a shell, so a parameter's value is one argument, never a command.

What the program tells the worker, it prints: each stdout line that is a JSON object is a
report (``{"step": 3, "dev_accuracy": 0.91}``; one with ``"final": true`` adds final
metrics), or with ``task.metrics_format: key_value``, each line of ``name=value`` pairs
(Katib's format; ``step`` or ``epoch`` names the step). Everything it prints is the trial's
log. Files it leaves in ``$HPSEARCH_CHECKPOINT_DIR`` are the trial's checkpoint: uploaded
after a report (every ``task.checkpoint_every`` steps) and when it ends, restored into that
folder before a resumed attempt or a fork starts.

A prune or stop (or the worker shutting down) sends SIGTERM to the program's process group,
and SIGKILL ``task.grace_seconds`` later; the trial ends at its last reported step.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import math
import os
import queue
import re
import shlex
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hpsearch import commands
from workers.checkpoints import Checkpoints
from workers.custom import CustomResult, Report

# How long a program's output may stay open after the program exited (a child it started
# still holds it) before that child's process group is killed.
_EOF_WAIT_S = 2.0
_POLL_S = 0.05
_STDERR_LINES = 40
# The environment a program never inherits from its worker: the worker's credentials.
_PRIVATE = ("HPSEARCH_TOKEN",)
_KEY_VALUE = re.compile(
    r"([A-Za-z_][\w.\-/]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)"
)


class CommandNotAllowed(Exception):
    """The study's command (or its workdir) is not one this worker was started to run."""


class CommandFailed(Exception):
    """The program could not start, or exited with an error; the message says how, with the
    end of what it wrote to stderr."""


def check_allowed(argv: Sequence[str], allowed: Collection[Sequence[str]]) -> None:
    if not commands.allowed(argv, allowed):
        allows = ", ".join(repr(shlex.join(p)) for p in allowed) or "none"
        raise CommandNotAllowed(
            f"command {shlex.join(argv)!r} does not start with a prefix this worker allows "
            f"(--allow-command: {allows}); start a worker with --allow-command "
            f"{shlex.quote(shlex.join(suggested_prefix(argv)))}"
        )


def suggested_prefix(argv: Sequence[str]) -> list[str]:
    """The program and its fixed words up to the first option or placeholder: what an
    operator would allow (``python train.py`` of ``python train.py --lr {lr}``)."""
    prefix = []
    for item in argv:
        if item.startswith("-") or commands.PLACEHOLDER.search(item):
            break
        prefix.append(item)
    return prefix or list(argv[:1])


def run_command(
    params: Mapping[str, Any],
    task: Mapping[str, Any],
    report: Report,
    *,
    allowed: Collection[Sequence[str]],
    device: str = "cpu",
    seed: int = 0,
    trial_id: int = 0,
    number: int = 0,
    checkpoints: Checkpoints | None = None,
    log: Callable[[str], None] = lambda text: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> CustomResult:
    """Runs the trial's program to its end, a stop, or a failure (:class:`CommandFailed`).

    Nothing is started unless ``allowed`` has a prefix of the command and its workdir is
    the worker's working directory or below it (:class:`CommandNotAllowed`)."""
    template = list(task.get("command") or ())
    check_allowed(template, allowed)  # before anything runs or is written
    workdir = _workdir(task.get("workdir"))
    values = {**task.get("fixed", {}), **params}
    with tempfile.TemporaryDirectory(prefix=f"hpsearch-trial-{trial_id}-") as folder:
        checkpoint_dir = Path(folder)
        filled = {
            **values,
            "epochs": int(task.get("epochs", 1)),
            "seed": seed,
            "trial_id": trial_id,
            "checkpoint_dir": str(checkpoint_dir),
        }
        argv = commands.substitute(template, filled)
        check_allowed(argv, allowed)
        restored = _restore(checkpoints, checkpoint_dir)
        env = _environment(values, trial_id, number, seed, device, checkpoint_dir, task)
        run = _Run(argv, workdir, env, task, report, checkpoints, checkpoint_dir, restored, log)
        return run.to_end(should_stop)


class _Run:
    """One program's life: its output read on two threads, its reports and checkpoints
    handled here, its end decided here."""

    def __init__(
        self,
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        task: Mapping[str, Any],
        report: Report,
        checkpoints: Checkpoints | None,
        checkpoint_dir: Path,
        restored: str | None,
        log: Callable[[str], None],
    ) -> None:
        self.argv = argv
        self.task = task
        self.report = report
        self.checkpoints = checkpoints
        self.checkpoint_dir = checkpoint_dir
        self.every = int(task.get("checkpoint_every", 1))
        self.key_value = task.get("metrics_format") == "key_value"
        self.log = log
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
        self.last_step = 0
        self.step_metrics: dict[str, float] = {}
        self.final_metrics: dict[str, float] = {}
        # The fingerprint of the folder as last uploaded (or restored): unchanged, not sent.
        self.snapshot_taken = restored
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, signalled as a whole
                preexec_fn=_die_with_parent,  # one C call between fork and exec
            )
        except OSError as e:
            raise CommandFailed(f"could not start {shlex.join(argv)!r} in {workdir}: {e}") from None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def to_end(self, should_stop: Callable[[], bool]) -> CustomResult:
        kill_at: float | None = None
        open_streams, exited_at = 2, None
        try:
            while open_streams or self.proc.poll() is None:
                with contextlib.suppress(queue.Empty):
                    kind, payload = self.events.get(timeout=_POLL_S)
                    if kind == "eof":
                        open_streams -= 1
                    elif kill_at is None and self._handle(kind, payload):
                        kill_at = self._terminate()
                if kill_at is None and should_stop():
                    kill_at = self._terminate()
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    self._signal(signal.SIGKILL)
                if self.proc.poll() is not None and open_streams:
                    # Exited, but a child it started still holds its output: not for long.
                    exited_at = exited_at or now
                    if now - exited_at > _EOF_WAIT_S:
                        self._signal(signal.SIGKILL)
                        break
        finally:
            if self.proc.poll() is None:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        stopped = kill_at is not None
        self._save_checkpoint(self.last_step, final=True)
        if not stopped and self.proc.returncode != 0:
            raise CommandFailed(self._failure())
        return CustomResult(
            {**self.step_metrics, **self.final_metrics},
            stopped_early=stopped,
            epochs_run=self.last_step,
        )

    def _handle(self, kind: str, payload: Any) -> bool:
        """Handles one report of the program; True: the trial is to stop."""
        if kind == "final":
            self.final_metrics.update(payload)
            return False
        step, metrics, snapshot = payload
        self.last_step, self.step_metrics = step, metrics
        stop = bool(self.report(step, metrics))
        if snapshot is not None:
            self._upload(step, snapshot)
        return stop

    def _read(self, stream: IO[bytes], is_stdout: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self.log(line if line.endswith("\n") else line + "\n")
            if is_stdout:
                parsed = self._parse(line)
                if parsed is not None:
                    self.events.put(self._with_checkpoint(parsed))
            else:
                self.stderr_tail.append(line.rstrip("\n"))
        stream.close()
        self.events.put(("eof", None))

    def _parse(self, line: str) -> tuple[str, Any] | None:
        """A report: ("step", (step, metrics)) or ("final", metrics); None for a log line."""
        found = _key_values(line) if self.key_value else _json_object(line)
        if not found:
            return None
        step = found.pop("step", None)
        if step is None and self.key_value:
            step = found.pop("epoch", None)
        final = found.pop("final", False)
        metrics = _numbers(found)
        if step is not None and not final and _is_step(step):
            return "step", (int(step), metrics)
        return ("final", metrics) if metrics else None

    def _with_checkpoint(self, parsed: tuple[str, Any]) -> tuple[str, Any]:
        """A step's report with the checkpoint folder as it is now, when one is due: taken
        as the line is read, because the program writes its checkpoint before it prints the
        step and may be far into the next step by the time the report is sent."""
        kind, payload = parsed
        if kind != "step":
            return parsed
        step, metrics = payload
        due = self.checkpoints is not None and self.every and step >= 1 and step % self.every == 0
        return kind, (step, metrics, self._snapshot(step) if due else None)

    def _snapshot(self, step: int) -> tuple[str | None, bytes] | None:
        snapshot = _snapshot(self.checkpoint_dir, unchanged_since=self.snapshot_taken)
        if snapshot is None:
            self.log(f"[hpsearch] checkpoint of step {step} skipped: its files kept changing\n")
        return snapshot

    def _terminate(self) -> float:
        self._signal(signal.SIGTERM)
        return time.monotonic() + float(self.task.get("grace_seconds", 30.0))

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def _save_checkpoint(self, step: int, *, final: bool = False) -> None:
        """Uploads the checkpoint folder as it is now as the checkpoint of ``step``."""
        if self.checkpoints is None or step < 1 or (final and not self.every):
            return
        snapshot = self._snapshot(step)
        if snapshot is not None:
            self._upload(step, snapshot)

    def _upload(self, step: int, snapshot: tuple[str | None, bytes]) -> None:
        """Uploads a snapshot of the checkpoint folder unless it is empty or the same as the
        last one uploaded (or restored)."""
        fingerprint, data = snapshot
        if self.checkpoints is None or fingerprint in (None, self.snapshot_taken):
            return
        self.checkpoints.save(step, data)
        self.snapshot_taken = fingerprint

    def _failure(self) -> str:
        code = self.proc.returncode
        how = (
            f"was killed by signal {signal.Signals(-code).name}"
            if code < 0
            else f"exited with code {code}"
        )
        tail = "\n".join(self.stderr_tail)
        return f"{shlex.join(self.argv)} {how}" + (
            f"; the end of its stderr:\n{tail}" if tail else ""
        )


def _workdir(given: str | None) -> Path:
    """The program's working directory: the worker's own, or a folder below it."""
    base = Path.cwd().resolve()
    workdir = (base / given).resolve() if given else base
    if not workdir.is_relative_to(base):
        raise CommandNotAllowed(
            f"task.workdir {given!r} is outside the worker's working directory ({base}): a "
            "worker runs commands only in the directory it was started in, or below it"
        )
    if not workdir.is_dir():
        raise CommandFailed(f"task.workdir {given!r}: no such directory under {base}")
    return workdir


def _environment(
    values: Mapping[str, Any],
    trial_id: int,
    number: int,
    seed: int,
    device: str,
    checkpoint_dir: Path,
    task: Mapping[str, Any],
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE}
    env.update(
        HPSEARCH_PARAMS=json.dumps(dict(values)),
        HPSEARCH_TRIAL_ID=str(trial_id),
        HPSEARCH_TRIAL_NUMBER=str(number),
        HPSEARCH_SEED=str(seed),
        HPSEARCH_DEVICE=device,
        HPSEARCH_EPOCHS=str(int(task.get("epochs", 1))),
        HPSEARCH_CHECKPOINT_DIR=str(checkpoint_dir),
        # Python buffers stdout into a pipe: its reports would arrive only at exit.
        PYTHONUNBUFFERED="1",
    )
    return env


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _key_values(line: str) -> dict[str, Any] | None:
    pairs = _KEY_VALUE.findall(line)
    return {name: float(value) for name, value in pairs} or None


def _numbers(found: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a report: its numbers (NaN and infinity kept, for the server to judge);
    anything else in the line is the program's business."""
    return {
        str(k): float(v)
        for k, v in found.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _is_step(step: Any) -> bool:
    return (
        isinstance(step, int | float)
        and not isinstance(step, bool)
        and math.isfinite(step)
        and step >= 0
        and step == int(step)
    )


def _restore(checkpoints: Checkpoints | None, folder: Path) -> str | None:
    """Unpacks the trial's checkpoint into ``folder``; its fingerprint, or None if none."""
    data = checkpoints.load() if checkpoints is not None else None
    if not data:
        return None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        archive.extractall(folder, filter="data")  # no absolute paths, links out, devices
    return _fingerprint(folder)


def _snapshot(
    folder: Path, unchanged_since: str | None = None, tries: int = 3
) -> tuple[str | None, bytes] | None:
    """The folder's files as a tar archive, with their fingerprint (None: no file), taken
    while none of them changes (the program may be writing its next checkpoint, or renaming
    a finished one into place); None if they kept changing. No archive is made when the
    fingerprint is still ``unchanged_since``."""
    for _ in range(tries):
        before = _fingerprint(folder)
        if before is None or before == unchanged_since:
            return before, b""
        try:
            data = _archive(folder)
        except FileNotFoundError:
            continue  # a file went (renamed into place) while it was read
        if _fingerprint(folder) == before:
            return before, data
    return None


def _archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for path in sorted(_files(folder)):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def _fingerprint(folder: Path) -> str | None:
    """What changes when a file in ``folder`` does; None when it holds no file."""
    entries = []
    for path in sorted(_files(folder)):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        entries.append(f"{path.relative_to(folder)}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(entries) or None


def _files(folder: Path) -> Iterator[Path]:
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _load_prctl() -> Any:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    except OSError:
        return None


_prctl = _load_prctl()  # before any fork: the child only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the worker dies, even by SIGKILL (Linux), so
    a killed worker leaves no program training on."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
