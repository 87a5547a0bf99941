"""The ``database`` artifact backend: checkpoints and trial logs in the server's PostgreSQL.

Checkpoints (up to HPSEARCH_MAX_ARTIFACT_BYTES, gigabytes) are cut into ``CHUNK``-byte rows
of ``artifact_chunks`` under one ``artifact_blobs`` row, written as they arrive (each chunk
its own short transaction, so an upload holds no transaction open while the network is
slow) and read back one at a time; memory stays at one chunk either way. Publishing is one
transaction: the ``stored_checkpoints`` row (trial, attempt, step → blob) goes in, the
trial's older ones beyond the newest ``KEEP`` go out, and blobs no checkpoint refers to any
more are deleted. A fork's checkpoint refers to its parent's blob: the bytes are never
copied. An upload abandoned mid-way (its server died) leaves an unpublished blob, removed by
a later upload of that trial once clearly old.

Chunked ``bytea`` rather than PostgreSQL's large objects: rows go through SQLAlchemy like
every other table, are deleted with their blob (a large object outlives a deleted row unless
something unlinks it), and need no privilege beyond the tables'.

Logs: one ``stored_logs`` row per attempt holds the bytes kept and how many were dropped
before them, with the same rules as the folder's files (:mod:`hpsearch.trial_logs`); the
row's lock serialises appends, as the folder's lock file does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from hpsearch.artifacts import (
    KEEP,
    ArtifactTooLarge,
    CheckpointInfo,
    DiscardedUnlessCommitted,
    StaleCheckpoint,
)
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.models import ArtifactBlob, ArtifactChunk, StoredCheckpoint, StoredLog
from hpsearch.trial_logs import MAX_LOG_BYTES, LogChunk, trim_point

CHUNK = 4 * 1024 * 1024
"""Bytes per chunk row: large enough that a gigabyte is a few hundred rows, small enough
that a row is never a burden to hold in memory."""
ABANDONED = timedelta(hours=1)


class DatabaseArtifacts:
    def __init__(self, db: Database, max_bytes: int, max_log_bytes: int = MAX_LOG_BYTES) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.max_log_bytes = max_log_bytes

    # -- checkpoints -----------------------------------------------------------------------

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ArtifactTooLarge(
                f"checkpoint of {size} bytes is over the server's limit of {self.max_bytes} "
                "bytes (HPSEARCH_MAX_ARTIFACT_BYTES)"
            )

    def latest(self, trial_id: int) -> CheckpointInfo | None:
        with self.db.read() as s:
            found = _checkpoints(s, trial_id)
        return found[-1] if found else None

    def upload(self, trial_id: int) -> DatabaseUpload:
        blob = uuid.uuid4().hex
        with self.db.write() as s:
            s.execute(
                delete(ArtifactBlob).where(
                    ArtifactBlob.trial_id == trial_id,
                    ArtifactBlob.published.is_(False),
                    ArtifactBlob.created_at < utcnow() - ABANDONED,
                )
            )
            s.add(ArtifactBlob(id=blob, trial_id=trial_id, size=0, created_at=utcnow()))
        return DatabaseUpload(self, trial_id, blob)

    def chunks(self, info: CheckpointInfo) -> Iterator[bytes]:
        assert info.blob_id is not None, "a database checkpoint has a blob"
        seq = 0
        while True:
            with self.db.read() as s:
                data = s.scalars(
                    select(ArtifactChunk.data).where(
                        ArtifactChunk.blob_id == info.blob_id, ArtifactChunk.seq == seq
                    )
                ).first()
            if data is None:
                return
            yield bytes(data)
            seq += 1

    def copy(self, source: CheckpointInfo, target_trial: int) -> CheckpointInfo:
        with self.db.write() as s:
            _clear(s, target_trial)
            s.add(
                StoredCheckpoint(
                    trial_id=target_trial,
                    attempt=0,
                    step=source.step,
                    blob_id=source.blob_id,
                    saved_at=utcnow(),
                )
            )
            s.flush()
            return _checkpoints(s, target_trial)[-1]

    def _write_chunk(self, blob: str, seq: int, data: bytes) -> None:
        with self.db.write() as s:
            s.add(ArtifactChunk(blob_id=blob, seq=seq, data=data))

    def _discard(self, blob: str) -> None:
        with self.db.write() as s:
            s.execute(delete(ArtifactBlob).where(ArtifactBlob.id == blob))

    def _publish(
        self, trial_id: int, blob: str, size: int, step: int, attempt: int, fresh: bool
    ) -> CheckpointInfo:
        with self.db.write() as s:
            if fresh:
                _clear(s, trial_id)
            found = _checkpoints(s, trial_id)
            current = found[-1] if found else None
            if current is not None and (current.attempt, current.step) > (attempt, step):
                raise StaleCheckpoint(
                    f"trial {trial_id} already has a checkpoint of attempt {current.attempt} "
                    f"at step {current.step}; refusing attempt {attempt}'s step {step}"
                )
            s.execute(
                update(ArtifactBlob)
                .where(ArtifactBlob.id == blob)
                .values(size=size, published=True)
            )
            s.execute(
                delete(StoredCheckpoint).where(
                    StoredCheckpoint.trial_id == trial_id,
                    StoredCheckpoint.attempt == attempt,
                    StoredCheckpoint.step == step,
                )
            )
            s.add(
                StoredCheckpoint(
                    trial_id=trial_id, attempt=attempt, step=step, blob_id=blob, saved_at=utcnow()
                )
            )
            s.flush()
            found = _checkpoints(s, trial_id)
            _delete(s, trial_id, found[:-KEEP])
            return found[-1]

    # -- logs ------------------------------------------------------------------------------

    def append_log(self, trial_id: int, attempt: int, offset: int, text: str) -> int:
        data = text.encode("utf-8", errors="replace")
        with self.db.write() as s:
            if offset == 0 and attempt == 1:
                # A new trial's first words: what a deleted trial with this id left goes.
                s.execute(delete(StoredLog).where(StoredLog.trial_id == trial_id))
            row = s.scalars(
                select(StoredLog)
                .where(StoredLog.trial_id == trial_id, StoredLog.attempt == attempt)
                .with_for_update()
            ).first()
            if row is None:
                row = StoredLog(trial_id=trial_id, attempt=attempt, start=0, data=b"")
                s.add(row)
            kept = bytes(row.data)
            end = row.start + len(kept)
            if offset + len(data) <= end:
                return end  # a resend of what is here already
            kept += data[max(0, end - offset) :]
            if len(kept) > self.max_log_bytes + self.max_log_bytes // 4:
                cut = trim_point(kept, self.max_log_bytes)
                row.start += cut
                kept = kept[cut:]
            row.data = kept
            return row.start + len(kept)

    def read_log(self, trial_id: int, attempt: int | None = None, offset: int = 0) -> LogChunk:
        with self.db.read() as s:
            attempts = list(
                s.scalars(
                    select(StoredLog.attempt)
                    .where(StoredLog.trial_id == trial_id)
                    .order_by(StoredLog.attempt)
                )
            )
            if attempt is None:
                attempt = attempts[-1] if attempts else None
            if attempt is None or attempt not in attempts:
                return LogChunk(attempt, attempts, offset, offset, False, "")
            start, data = s.execute(
                select(StoredLog.start, StoredLog.data).where(
                    StoredLog.trial_id == trial_id, StoredLog.attempt == attempt
                )
            ).one()
        data = bytes(data)
        first = max(offset, start)
        text = data[first - start :].decode("utf-8", errors="replace")
        return LogChunk(attempt, attempts, first, start + len(data), first > offset, text)


class DatabaseUpload(DiscardedUnlessCommitted):
    """A checkpoint being written to the database, a chunk row at a time."""

    def __init__(self, store: DatabaseArtifacts, trial_id: int, blob: str) -> None:
        self._store = store
        self._trial_id = trial_id
        self._blob = blob
        self._pending = bytearray()
        self._seq = 0
        self._committed = False
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._store.check_size(self.size)
        self._pending += chunk
        while len(self._pending) >= CHUNK:
            self._flush(bytes(self._pending[:CHUNK]))
            del self._pending[:CHUNK]

    def commit(self, step: int, attempt: int, *, fresh: bool = False) -> CheckpointInfo:
        if step < 0 or attempt < 0:
            raise ValueError("step and attempt must be >= 0")
        if self._pending or self._seq == 0:
            self._flush(bytes(self._pending))
            self._pending.clear()
        info = self._store._publish(self._trial_id, self._blob, self.size, step, attempt, fresh)
        self._committed = True
        return info

    def _flush(self, data: bytes) -> None:
        self._store._write_chunk(self._blob, self._seq, data)
        self._seq += 1

    def discard(self) -> None:
        if not self._committed:
            self._store._discard(self._blob)


def _checkpoints(session: Session, trial_id: int) -> list[CheckpointInfo]:
    rows = session.execute(
        select(
            StoredCheckpoint.step,
            StoredCheckpoint.attempt,
            ArtifactBlob.size,
            StoredCheckpoint.saved_at,
            StoredCheckpoint.blob_id,
        )
        .join(ArtifactBlob, ArtifactBlob.id == StoredCheckpoint.blob_id)
        .where(StoredCheckpoint.trial_id == trial_id)
        .order_by(StoredCheckpoint.attempt, StoredCheckpoint.step)
    ).all()
    return [
        CheckpointInfo(trial_id, step, attempt, size, saved_at, blob_id=blob)
        for step, attempt, size, saved_at, blob in rows
    ]


def _clear(session: Session, trial_id: int) -> None:
    _delete(session, trial_id, _checkpoints(session, trial_id))


def _delete(session: Session, trial_id: int, old: list[CheckpointInfo]) -> None:
    """Deletes the trial's checkpoints ``old``, and their blobs unless another checkpoint
    refers to them too (a fork's refers to its parent's blob; the parent's to a blob the
    fork still uses)."""
    for info in old:
        session.execute(
            delete(StoredCheckpoint).where(
                StoredCheckpoint.trial_id == trial_id,
                StoredCheckpoint.attempt == info.attempt,
                StoredCheckpoint.step == info.step,
            )
        )
    blobs = {info.blob_id for info in old}
    if blobs:
        session.execute(
            delete(ArtifactBlob).where(
                ArtifactBlob.id.in_(blobs),
                ~exists().where(StoredCheckpoint.blob_id == ArtifactBlob.id),
            )
        )
