"""A trial's checkpoints kept in the server's artifact store, as the trainer sees them.

The trainer (``workers.training``) asks for the latest checkpoint when it starts and hands one
over every ``task.checkpoint_every`` epochs; this class turns both into HTTP calls made as the
holder of the trial's lease. A checkpoint that cannot be stored (the server is down, or it is
over the server's size limit) costs only the ability to resume, so training goes on; a lost
lease ends it, as a refused report would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from hpsearch.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("hpsearch.worker")


class Checkpoints(Protocol):
    """Where one trial's checkpoints are kept, as every trainer sees them: built-in, entry
    point and command alike."""

    def load(self) -> bytes | None:
        """The trial's latest checkpoint, or None when it has none (a fresh start)."""

    def save(self, step: int, data: bytes) -> None:
        """Keeps ``data``, the checkpoint after step ``step``, as the trial's latest."""


class ServerCheckpoints:
    def __init__(
        self,
        client: Client,
        trial_id: int,
        worker_id: str,
        attempt: int,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.client = client
        self.trial_id = trial_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.say = say

    def load(self) -> bytes | None:
        data = self.client.download_checkpoint(self.trial_id, self.worker_id, self.attempt)
        if data is not None:
            self.say(f"  resuming from the trial's checkpoint on the server ({len(data)} bytes)")
        return data

    def save(self, step: int, data: bytes) -> None:
        try:
            self.client.upload_checkpoint(self.trial_id, self.worker_id, self.attempt, step, data)
        except ApiError as e:
            if e.status == 409:
                raise  # the trial is no longer this worker's: stop training it
            self.say(f"trial {self.trial_id}: checkpoint of epoch {step} not stored: {e.message}")
        except ServerUnreachable as e:
            self.say(f"trial {self.trial_id}: checkpoint of epoch {step} not stored: {e}")
