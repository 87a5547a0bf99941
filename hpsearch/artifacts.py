"""The artifact store: trials' checkpoints as files under one directory (``artifact_dir``).

Pure path and file logic; the API streams bytes in and out through it, workers never see the
directory. Layout::

    <root>/trials/<trial_id>/step-<step>.attempt-<attempt>.ckpt

The name carries what a reader needs (the epoch the checkpoint ends and the attempt that wrote
it), so one ``rename`` publishes a checkpoint and its description together. Writes go to a
temporary file in the same directory, are flushed to disk, then renamed: a reader sees the old
checkpoint or the new one, never half of one; a crash mid-upload leaves only a temporary file,
which a later upload of that trial removes once it is clearly abandoned.

"Latest" is the highest (attempt, step): a re-queued trial's new attempt supersedes what the
lost attempt wrote, even at a lower step, and a late upload from a lost attempt cannot
replace a newer attempt's checkpoint. A fork's inherited checkpoint is recorded as attempt 0
so the fork's own first checkpoint supersedes it.

Whether a trial has a checkpoint at all is the database's word (``Trial.checkpoint_step``),
not the directory's: SQLite may give a deleted trial's id to a new trial, and the new trial's
first checkpoint (``fresh``) clears whatever an old trial left under that id.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from hpsearch.errors import HpsearchError, InvalidState

_NAME = re.compile(r"^step-(\d{9})\.attempt-(\d{4})\.ckpt$")
_UPLOAD_PREFIX = ".upload-"
# The newest checkpoint plus one: a download that listed the previous newest a moment before
# a new upload still finds its file.
KEEP = 2


class ArtifactTooLarge(HpsearchError):
    code = "artifact_too_large"


class StaleCheckpoint(InvalidState):
    """An upload older than the trial's current checkpoint (a lost attempt writing late)."""

    code = "stale_checkpoint"


@dataclass(frozen=True)
class CheckpointInfo:
    trial_id: int
    step: int
    """The last epoch the checkpoint has trained; training resumes at ``step + 1``."""
    attempt: int
    size: int
    saved_at: datetime
    path: Path | None = None
    """Where the folder backend keeps it (served as a file)."""
    blob_id: str | None = None
    """Where the database backend keeps it (streamed in chunks)."""


class ArtifactStore:
    def __init__(self, root: Path | str, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def trial_dir(self, trial_id: int) -> Path:
        return self.root / "trials" / str(int(trial_id))

    def latest(self, trial_id: int) -> CheckpointInfo | None:
        """The trial's current checkpoint, or None when it has none."""
        found = self._checkpoints(trial_id)
        return found[-1] if found else None

    def upload(self, trial_id: int) -> CheckpointUpload:
        """Starts writing a checkpoint of ``trial_id``; publish it with ``commit``.

        Use as a context manager: leaving it without a commit removes the partial file.
        """
        directory = self.trial_dir(trial_id)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(_UPLOAD_PREFIX + "*"):
            _remove_if_old(stale)
        return CheckpointUpload(self, trial_id, directory / f"{_UPLOAD_PREFIX}{uuid.uuid4().hex}")

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ArtifactTooLarge(
                f"checkpoint of {size} bytes is over the server's limit of {self.max_bytes} "
                "bytes (HPSEARCH_MAX_ARTIFACT_BYTES)"
            )

    def copy(self, source: CheckpointInfo, target_trial: int) -> CheckpointInfo:
        """Gives the new trial ``target_trial`` the checkpoint ``source`` (a fork's start).

        Checkpoint files never change once written, so a hard link shares the bytes; a copy is
        the fallback where links are not possible.
        """
        self._clear(target_trial)
        directory = self.trial_dir(target_trial)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{_UPLOAD_PREFIX}{uuid.uuid4().hex}"
        assert source.path is not None, "a checkpoint of this store has a path"
        try:
            os.link(source.path, tmp)
        except FileNotFoundError:
            raise InvalidState(
                f"trial {source.trial_id}'s checkpoint at step {source.step} was replaced "
                "while it was being copied; try again"
            ) from None
        except OSError:
            shutil.copyfile(source.path, tmp)
        final = directory / _file_name(source.step, 0)
        os.replace(tmp, final)
        return self._info(target_trial, final, source.step, 0)

    def delete_trial(self, trial_id: int) -> None:
        shutil.rmtree(self.trial_dir(trial_id), ignore_errors=True)

    def _clear(self, trial_id: int) -> None:
        for old in self._checkpoints(trial_id):
            _unlink(old)

    def _commit(
        self, trial_id: int, tmp: Path, step: int, attempt: int, fresh: bool
    ) -> CheckpointInfo:
        if fresh:
            self._clear(trial_id)
        current = self.latest(trial_id)
        if current is not None and (current.attempt, current.step) > (attempt, step):
            raise StaleCheckpoint(
                f"trial {trial_id} already has a checkpoint of attempt {current.attempt} at "
                f"step {current.step}; refusing attempt {attempt}'s step {step}"
            )
        final = self.trial_dir(trial_id) / _file_name(step, attempt)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        for old in self._checkpoints(trial_id)[:-KEEP]:
            _unlink(old)
        return self._info(trial_id, final, step, attempt)

    def _checkpoints(self, trial_id: int) -> list[CheckpointInfo]:
        directory = self.trial_dir(trial_id)
        if not directory.is_dir():
            return []
        found = []
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match is None:
                continue
            try:
                found.append(self._info(trial_id, path, int(match[1]), int(match[2])))
            except FileNotFoundError:
                continue  # pruned by a concurrent upload
        return sorted(found, key=lambda c: (c.attempt, c.step))

    @staticmethod
    def _info(trial_id: int, path: Path, step: int, attempt: int) -> CheckpointInfo:
        stat = path.stat()
        saved_at = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
        return CheckpointInfo(trial_id, step, attempt, stat.st_size, saved_at, path)


class DiscardedUnlessCommitted:
    """An upload as a context: leaving it without a commit discards what was written."""

    def discard(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


class CheckpointUpload(DiscardedUnlessCommitted):
    """A checkpoint being written: ``write`` chunks (size-checked), then ``commit``."""

    def __init__(self, store: ArtifactStore, trial_id: int, tmp: Path) -> None:
        self._store = store
        self._trial_id = trial_id
        self._tmp = tmp
        self._file = open(tmp, "wb")  # noqa: SIM115  (closed by commit or __exit__)
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._store.check_size(self.size)
        self._file.write(chunk)

    def commit(self, step: int, attempt: int, *, fresh: bool = False) -> CheckpointInfo:
        """Publishes the bytes as the trial's checkpoint at ``step``; ``fresh``: the trial's
        first, so files an earlier trial with the same id left are removed first."""
        if step < 0 or attempt < 0:
            raise ValueError("step and attempt must be >= 0")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._store._commit(self._trial_id, self._tmp, step, attempt, fresh)

    def discard(self) -> None:
        """Removes the bytes unless committed (a committed file was moved away)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _file_name(step: int, attempt: int) -> str:
    return f"step-{step:09d}.attempt-{attempt:04d}.ckpt"


def _unlink(info: CheckpointInfo) -> None:
    if info.path is not None:
        with contextlib.suppress(FileNotFoundError):
            info.path.unlink()


def _remove_if_old(path: Path, age_s: float = 3600.0) -> None:
    # Another upload of the same trial may be in flight; only abandoned files are removed.
    with contextlib.suppress(FileNotFoundError):
        if datetime.now().timestamp() - path.stat().st_mtime > age_s:
            path.unlink()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable (POSIX); some platforms cannot open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
