"""The checkpoint endpoints over HTTP: only the lease holder uploads, the size limit holds,
and a download is the latest checkpoint with its step."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from hpsearch.client import ApiError
from tests.conftest import ServerProcess, digits_spec


def test_checkpoints_are_uploaded_by_the_lease_holder_and_downloaded(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_MAX_ARTIFACT_BYTES="1000")
    with server.client(retry_for=5) as client:
        study = client.create_study(digits_spec())
        claim = client.claim("w", "host", ["cpu"], study["id"])["trial"]
        trial, attempt = claim["id"], claim["attempt"]
        assert client.download_checkpoint(trial) is None

        client.upload_checkpoint(trial, "w", attempt, 1, b"epoch 1")
        saved = client.upload_checkpoint(trial, "w", attempt, 2, b"epoch 2")
        assert (saved["step"], saved["attempt"], saved["bytes"]) == (2, attempt, 7)
        assert client.download_checkpoint(trial) == b"epoch 2"
        assert client.trial(trial)["checkpoint_step"] == 2

        with pytest.raises(ApiError) as stranger:
            client.upload_checkpoint(trial, "someone-else", attempt, 3, b"not mine")
        assert (stranger.value.status, stranger.value.code) == (409, "lease_lost")
        with pytest.raises(ApiError) as too_large:
            client.upload_checkpoint(trial, "w", attempt, 3, b"x" * 1001)
        assert too_large.value.status == 413
        assert "HPSEARCH_MAX_ARTIFACT_BYTES" in too_large.value.message
        assert client.download_checkpoint(trial) == b"epoch 2"  # neither replaced it

    unknown = httpx.get(f"{server.url}/api/v1/trials/999/checkpoint")
    assert unknown.status_code == 404 and "does not exist" in unknown.json()["message"]
