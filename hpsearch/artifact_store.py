"""Where trials' artifacts live: one interface, two backends, chosen by
``HPSEARCH_ARTIFACT_BACKEND``.

An artifact is what a trial produces besides its metrics: its checkpoints (uploaded by the
lease holder, downloaded to resume it, fork it or evaluate it) and each attempt's output (its
log). The API reads and writes them only through :class:`ArtifactStore`:

- ``folder`` (the default): files under ``HPSEARCH_ARTIFACT_DIR`` (:mod:`hpsearch.artifacts`,
  :mod:`hpsearch.trial_logs`). Every server process on the host shares it; servers on several
  hosts need it on a shared volume.
- ``database``: tables in the server's PostgreSQL database
  (:mod:`hpsearch.store.artifacts`). Every server process on every host shares it, with
  nothing else to run or mount (docs/architecture.md, "Artifacts").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol

from hpsearch.artifacts import ArtifactStore as Folder
from hpsearch.artifacts import CheckpointInfo
from hpsearch.errors import InvalidState
from hpsearch.settings import Settings
from hpsearch.store.artifacts import DatabaseArtifacts
from hpsearch.store.db import Database
from hpsearch.trial_logs import MAX_LOG_BYTES, LogChunk, TrialLogs


class Upload(Protocol):
    """A checkpoint being written: ``write`` chunks (size-checked), then ``commit``; leaving
    the context without a commit discards what was written."""

    size: int

    def write(self, chunk: bytes) -> None: ...

    def commit(self, step: int, attempt: int, *, fresh: bool = False) -> CheckpointInfo:
        """Publishes the bytes as the trial's checkpoint at ``step``; ``fresh``: the trial's
        first, so what an earlier trial with the same id left is removed first. Raises
        StaleCheckpoint when the trial has a newer (attempt, step) already."""
        ...

    def __enter__(self) -> Upload: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ArtifactStore(Protocol):
    """Checkpoints and logs of trials. The latest checkpoint is the highest (attempt, step);
    the database (``Trial.checkpoint_step``) says whether a trial has one at all."""

    max_bytes: int

    def check_size(self, size: int) -> None:
        """Raises ArtifactTooLarge for a checkpoint over ``max_bytes``."""
        ...

    def latest(self, trial_id: int) -> CheckpointInfo | None: ...

    def upload(self, trial_id: int) -> Upload: ...

    def chunks(self, info: CheckpointInfo) -> Iterator[bytes]:
        """The checkpoint's bytes, a piece at a time."""
        ...

    def copy(self, source: CheckpointInfo, target_trial: int) -> CheckpointInfo:
        """Gives a fork (``target_trial``) the checkpoint ``source``, as attempt 0."""
        ...

    def append_log(self, trial_id: int, attempt: int, offset: int, text: str) -> int:
        """See :meth:`hpsearch.trial_logs.TrialLogs.append`."""
        ...

    def read_log(self, trial_id: int, attempt: int | None = None, offset: int = 0) -> LogChunk:
        """See :meth:`hpsearch.trial_logs.TrialLogs.read`."""
        ...


class FolderArtifacts:
    """The ``folder`` backend: checkpoint files and log files under one directory, laid out as
    :mod:`hpsearch.artifacts` and :mod:`hpsearch.trial_logs` describe."""

    def __init__(
        self, root: Path | str, max_bytes: int, max_log_bytes: int = MAX_LOG_BYTES
    ) -> None:
        self.checkpoints = Folder(root, max_bytes)
        self.logs = TrialLogs(root, max_log_bytes)
        self.max_bytes = max_bytes

    def check_size(self, size: int) -> None:
        self.checkpoints.check_size(size)

    def latest(self, trial_id: int) -> CheckpointInfo | None:
        return self.checkpoints.latest(trial_id)

    def upload(self, trial_id: int) -> Upload:
        return self.checkpoints.upload(trial_id)

    def chunks(self, info: CheckpointInfo) -> Iterator[bytes]:
        assert info.path is not None, "a folder checkpoint has a path"
        with open(info.path, "rb") as f:
            while piece := f.read(1024 * 1024):
                yield piece

    def copy(self, source: CheckpointInfo, target_trial: int) -> CheckpointInfo:
        return self.checkpoints.copy(source, target_trial)

    def append_log(self, trial_id: int, attempt: int, offset: int, text: str) -> int:
        return self.logs.append(trial_id, attempt, offset, text)

    def read_log(self, trial_id: int, attempt: int | None = None, offset: int = 0) -> LogChunk:
        return self.logs.read(trial_id, attempt, offset)


def open_artifacts(settings: Settings, db: Database) -> ArtifactStore:
    """The backend ``settings.artifact_backend`` names, on the server's database ``db``."""
    if settings.artifact_backend == "folder":
        return FolderArtifacts(settings.artifact_dir, settings.max_artifact_bytes)
    if not db.is_postgres:
        # Publishing a checkpoint takes a transaction of its own inside the one that checks
        # the lease: SQLite's single writer would wait for itself. A SQLite server is one
        # host, whose processes share the folder anyway.
        raise ValueError(
            "HPSEARCH_ARTIFACT_BACKEND=database needs a PostgreSQL database; with SQLite, "
            "keep the default (folder)"
        )
    return DatabaseArtifacts(db, settings.max_artifact_bytes)


def copy_latest_checkpoint(artifacts: ArtifactStore, source_trial: int, target_trial: int) -> int:
    """Gives ``target_trial`` the latest checkpoint of ``source_trial`` (a PBT exploit's copy);
    returns the epoch it ends. InvalidState when the source has none."""
    source = artifacts.latest(source_trial)
    if source is None:
        raise InvalidState(f"trial {source_trial} has no checkpoint to copy")
    return artifacts.copy(source, target_trial).step
