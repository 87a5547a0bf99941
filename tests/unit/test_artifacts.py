"""The artifact store on a real directory: atomic publication, the size limit, which
checkpoint is a trial's latest, forks' copies, and files left under a reused trial id."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.artifacts import ArtifactStore, ArtifactTooLarge, StaleCheckpoint


def put(store: ArtifactStore, trial: int, step: int, attempt: int, data: bytes) -> None:
    with store.upload(trial) as upload:
        upload.write(data[:3])
        upload.write(data[3:])
        upload.commit(step, attempt)


def content(store: ArtifactStore, trial: int) -> bytes:
    latest = store.latest(trial)
    assert latest is not None
    return latest.path.read_bytes()


def files(store: ArtifactStore, trial: int) -> list[str]:
    return sorted(p.name for p in store.trial_dir(trial).iterdir())


def test_the_latest_checkpoint_is_the_last_published(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    assert store.latest(1) is None
    put(store, 1, step=1, attempt=1, data=b"epoch one")
    put(store, 1, step=2, attempt=1, data=b"epoch two")
    latest = store.latest(1)
    assert latest is not None
    assert (latest.step, latest.attempt, latest.size) == (2, 1, len(b"epoch two"))
    assert content(store, 1) == b"epoch two"
    put(store, 1, step=3, attempt=1, data=b"epoch three")
    assert len(files(store, 1)) == 2  # the newest and the one before: nothing piles up


def test_an_unfinished_upload_publishes_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    put(store, 1, step=1, attempt=1, data=b"kept")
    with pytest.raises(RuntimeError), store.upload(1) as upload:
        upload.write(b"half of a check")
        raise RuntimeError("the worker's connection dropped")
    assert content(store, 1) == b"kept"
    assert files(store, 1) == ["step-000000001.attempt-0001.ckpt"]


def test_a_checkpoint_over_the_limit_is_refused_and_removed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=10)
    with pytest.raises(ArtifactTooLarge, match="HPSEARCH_MAX_ARTIFACT_BYTES"):
        put(store, 1, step=1, attempt=1, data=b"x" * 11)
    assert store.latest(1) is None and files(store, 1) == []
    with pytest.raises(ArtifactTooLarge):
        store.check_size(11)


def test_a_new_attempt_supersedes_a_lost_one_even_at_a_lower_step(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    put(store, 1, step=5, attempt=1, data=b"attempt 1 epoch 5")
    put(store, 1, step=3, attempt=2, data=b"attempt 2 epoch 3")
    assert content(store, 1) == b"attempt 2 epoch 3"
    with pytest.raises(StaleCheckpoint, match="attempt 2"):
        put(store, 1, step=6, attempt=1, data=b"the lost worker, late")
    assert content(store, 1) == b"attempt 2 epoch 3"
    put(store, 1, step=3, attempt=2, data=b"a resend")  # the same upload again is fine
    assert content(store, 1) == b"a resend"


def test_a_fork_gets_its_parents_checkpoint_as_attempt_zero(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    put(store, 1, step=4, attempt=3, data=b"parent at epoch 4")
    source = store.latest(1)
    assert source is not None
    copied = store.copy(source, 2)
    assert (copied.step, copied.attempt) == (4, 0)
    assert content(store, 2) == b"parent at epoch 4"
    put(store, 2, step=5, attempt=1, data=b"fork at epoch 5")
    assert content(store, 2) == b"fork at epoch 5"
    assert content(store, 1) == b"parent at epoch 4"  # the parent's own file is untouched


def test_a_fresh_trial_clears_what_a_deleted_trial_left_under_its_id(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, max_bytes=1000)
    put(store, 7, step=9, attempt=3, data=b"a deleted trial's")
    with store.upload(7) as upload:
        upload.write(b"the new trial's")
        upload.commit(1, 1, fresh=True)
    assert content(store, 7) == b"the new trial's"
    assert files(store, 7) == ["step-000000001.attempt-0001.ckpt"]
