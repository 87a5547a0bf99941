"""What each attempt of a trial printed: its stdout and stderr, the last ``MAX_LOG_BYTES``.

Files beside the trial's checkpoints in the artifact directory::

    <root>/trials/<trial_id>/logs/attempt-<attempt>.log     the bytes kept
    <root>/trials/<trial_id>/logs/attempt-<attempt>.start   how many were dropped before them

Offsets count every byte the attempt ever wrote, so a reader that follows the log (``offset``
= the last reply's ``next_offset``) never sees a byte twice, and learns when the head it had
not read yet was dropped. The worker sends each piece with the offset it starts at: a piece
resent after a lost reply is recognised and not appended twice, and a piece at offset 0 of a
first attempt starts the trial's logs afresh (SQLite may give a deleted trial's id to a new
one; its logs are not the new trial's).

One writer per attempt (the lease holder) and any number of readers; writers of different
server processes sharing the directory are serialised by a lock file per trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LOG_BYTES = 1024 * 1024
"""What is kept of one attempt's output: its last MiB."""

_ATTEMPT = re.compile(r"^attempt-(\d+)\.log$")


@dataclass(frozen=True)
class LogChunk:
    attempt: int | None
    """The attempt read (None: the trial has no log yet)."""
    attempts: list[int]
    """Every attempt with a log, oldest first."""
    offset: int
    """Where ``text`` starts, counted from the attempt's first byte."""
    next_offset: int
    """Where the next read continues."""
    truncated: bool
    """Bytes between the offset asked for and ``offset`` were dropped (only the last
    ``MAX_LOG_BYTES`` of an attempt are kept)."""
    text: str


class TrialLogs:
    def __init__(self, root: Path | str, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def append(self, trial_id: int, attempt: int, offset: int, text: str) -> int:
        """Appends ``text``, which starts at ``offset`` of the attempt's output; returns the
        attempt's length so far. A piece that was appended already is not appended again."""
        data = text.encode("utf-8", errors="replace")
        folder = self._folder(trial_id)
        with self._locked(trial_id):
            if offset == 0 and attempt == 1:
                _clear(folder)
                folder.mkdir(parents=True, exist_ok=True)
            start, size = self._extent(trial_id, attempt)
            end = start + size
            if offset + len(data) <= end:
                return end  # a resend of what is here already
            data = data[max(0, end - offset) :]
            log = self._log(trial_id, attempt)
            with open(log, "ab") as f:
                f.write(data)
            if size + len(data) > self.max_bytes + self.max_bytes // 4:
                self._trim(trial_id, attempt)
            start, size = self._extent(trial_id, attempt)
            return start + size

    def read(self, trial_id: int, attempt: int | None = None, offset: int = 0) -> LogChunk:
        """The attempt's output (default: the latest attempt's) from ``offset`` on."""
        attempts = self.attempts(trial_id)
        if attempt is None:
            attempt = attempts[-1] if attempts else None
        if attempt is None or attempt not in attempts:
            return LogChunk(attempt, attempts, offset, offset, False, "")
        # Read under the lock: a trim rewrites the file and its start together.
        with self._locked(trial_id):
            start, _ = self._extent(trial_id, attempt)
            data = self._log(trial_id, attempt).read_bytes()
        first = max(offset, start)
        text = data[first - start :].decode("utf-8", errors="replace")
        return LogChunk(attempt, attempts, first, start + len(data), first > offset, text)

    def attempts(self, trial_id: int) -> list[int]:
        folder = self._folder(trial_id)
        if not folder.is_dir():
            return []
        found = (_ATTEMPT.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _trim(self, trial_id: int, attempt: int) -> None:
        """Keeps the last ``max_bytes``, from the start of a line (so from a whole
        character), and records how many bytes went."""
        log = self._log(trial_id, attempt)
        start, _ = self._extent(trial_id, attempt)
        data = log.read_bytes()
        cut = trim_point(data, self.max_bytes)
        tmp = log.with_suffix(".tmp")
        tmp.write_bytes(data[cut:])
        os.replace(tmp, log)
        self._start(trial_id, attempt).write_text(str(start + cut))

    def _extent(self, trial_id: int, attempt: int) -> tuple[int, int]:
        """(bytes dropped, bytes kept) of the attempt's log."""
        log, start_file = self._log(trial_id, attempt), self._start(trial_id, attempt)
        size = log.stat().st_size if log.exists() else 0
        start = int(start_file.read_text() or 0) if start_file.exists() else 0
        return start, size

    def _folder(self, trial_id: int) -> Path:
        return self.root / "trials" / str(int(trial_id)) / "logs"

    def _log(self, trial_id: int, attempt: int) -> Path:
        return self._folder(trial_id) / f"attempt-{int(attempt)}.log"

    def _start(self, trial_id: int, attempt: int) -> Path:
        return self._folder(trial_id) / f"attempt-{int(attempt)}.start"

    @contextlib.contextmanager
    def _locked(self, trial_id: int) -> Iterator[None]:
        folder = self._folder(trial_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / "logs.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def trim_point(data: bytes, max_bytes: int) -> int:
    """Where to cut ``data`` to keep its last ``max_bytes``: at the start of a line, when one
    starts soon after, and never inside a UTF-8 character."""
    cut = len(data) - max_bytes
    newline = data.find(b"\n", cut, cut + 4096)
    cut = newline + 1 if newline >= 0 else cut
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:
        cut += 1
    return cut


def _clear(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)
