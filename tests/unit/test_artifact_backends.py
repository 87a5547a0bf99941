"""Every artifact backend keeps the same contract (hpsearch/artifact_store.py): the folder on
a real directory, the database on a real PostgreSQL. Checkpoints: the latest is the highest
(attempt, step), an unfinished upload publishes nothing, a lost attempt cannot write late, a
fork starts from its parent's, a fresh trial clears a reused id. Logs: offsets over the whole
output, resends, the last bytes kept from a line start, a reused id cleared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hpsearch.artifact_store import ArtifactStore, FolderArtifacts
from hpsearch.artifacts import ArtifactTooLarge, StaleCheckpoint
from hpsearch.store import Database
from hpsearch.store.artifacts import DatabaseArtifacts

Make = Callable[..., ArtifactStore]


@pytest.fixture(params=["folder", pytest.param("database", marks=pytest.mark.postgres)])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    if request.param == "folder":
        return lambda max_bytes=1000, max_log_bytes=10_000: FolderArtifacts(
            tmp_path, max_bytes, max_log_bytes
        )
    db = Database(request.getfixturevalue("postgres_url"))
    request.addfinalizer(db.dispose)
    return lambda max_bytes=1000, max_log_bytes=10_000: DatabaseArtifacts(
        db, max_bytes, max_log_bytes
    )


def put(store: ArtifactStore, trial: int, step: int, attempt: int, data: bytes) -> None:
    with store.upload(trial) as upload:
        upload.write(data[:3])
        upload.write(data[3:])
        upload.commit(step, attempt)


def content(store: ArtifactStore, trial: int) -> bytes:
    latest = store.latest(trial)
    assert latest is not None
    return b"".join(store.chunks(latest))


def test_checkpoints(make: Make) -> None:
    store = make()
    assert store.latest(1) is None
    put(store, 1, step=1, attempt=1, data=b"epoch one")
    put(store, 1, step=2, attempt=1, data=b"epoch two")
    latest = store.latest(1)
    assert latest is not None and (latest.step, latest.attempt, latest.size) == (2, 1, 9)
    assert content(store, 1) == b"epoch two"

    with pytest.raises(RuntimeError), store.upload(1) as upload:
        upload.write(b"half of a check")
        raise RuntimeError("the worker's connection dropped")
    assert content(store, 1) == b"epoch two"

    put(store, 1, step=1, attempt=2, data=b"attempt 2 epoch 1")  # supersedes a lost attempt
    with pytest.raises(StaleCheckpoint, match="attempt 2"):
        put(store, 1, step=6, attempt=1, data=b"the lost worker, late")
    assert content(store, 1) == b"attempt 2 epoch 1"

    source = store.latest(1)
    assert source is not None
    copied = store.copy(source, 2)
    assert (copied.step, copied.attempt) == (1, 0)
    assert content(store, 2) == b"attempt 2 epoch 1"
    put(store, 2, step=2, attempt=1, data=b"fork at epoch 2")
    put(store, 2, step=3, attempt=1, data=b"fork at epoch 3")
    put(store, 2, step=4, attempt=1, data=b"fork at epoch 4")
    assert content(store, 2) == b"fork at epoch 4"
    assert content(store, 1) == b"attempt 2 epoch 1"  # the parent's own is untouched

    with store.upload(1) as upload:  # a new trial under a deleted one's id
        upload.write(b"the new trial's")
        upload.commit(1, 1, fresh=True)
    assert content(store, 1) == b"the new trial's"

    small = make(max_bytes=10)
    with pytest.raises(ArtifactTooLarge, match="HPSEARCH_MAX_ARTIFACT_BYTES"):
        put(small, 3, step=1, attempt=1, data=b"x" * 11)
    assert small.latest(3) is None


def test_logs(make: Make) -> None:
    store = make(max_log_bytes=1000)
    assert store.read_log(7).attempt is None and store.read_log(7).text == ""
    assert store.append_log(7, 1, 0, "épsilon\n") == 9  # bytes, not characters
    assert store.append_log(7, 1, 0, "épsilon\n") == 9  # a resend after a lost reply
    assert store.append_log(7, 1, 5, "lon\ntwo\n") == 13  # overlaps what is there
    assert store.read_log(7, offset=9).text == "two\n"
    store.append_log(7, 2, 0, "retry\n")
    assert store.read_log(7).attempts == [1, 2] and store.read_log(7).text == "retry\n"

    offset = 0
    for i in range(100):
        offset = store.append_log(3, 1, offset, f"line {i:03d} ✓\n")  # 13 bytes a line
    whole = store.read_log(3)
    assert whole.next_offset == 1300 and whole.offset > 0
    assert len(whole.text.encode()) <= 1250 and whole.text.startswith("line ")
    assert store.read_log(3, offset=10).truncated

    store.append_log(7, 1, 0, "new trial\n")  # a first attempt from 0: a reused id
    assert store.read_log(7).attempts == [1] and store.read_log(7).text == "new trial\n"
