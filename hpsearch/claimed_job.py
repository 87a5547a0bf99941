"""What a worker is told of the job it claimed: the ``trial`` of a ``POST /claims`` reply.

The wire shape, declared once in the core for the client side (workers, the notebook trial
lease); the API's ``ClaimedTrial`` holds the same fields (a test keeps them equal).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class ClaimedJob(TypedDict):
    """A claimed trial to train, or (``kind: evaluate_test``) a completed trial's final test
    evaluation."""

    id: int
    """The trial's id, as everywhere else (``/trials/{id}``)."""
    study_id: int
    number: int
    """The trial's number in its study: users see "study 3 trial 18"."""
    attempt: int
    """Which claim of the trial this is; with the worker's id it names the lease."""
    params: dict[str, Any]
    task: dict[str, Any]
    lease_expires_at: str
    resume_step: int | None
    """The step of the checkpoint to resume from, or None to start from scratch."""
    kind: Literal["train", "evaluate_test"]
    report_interval_s: float
    """How long the worker may hold back per-epoch reports to send them together; 0: each
    at once."""
    schedule: list[dict[str, Any]] | None
    """A replay of a PBT schedule: ``[{"first_epoch", "params"}, ...]``, oldest first
    (``workers.schedule`` trains each stretch with its params); None: train with ``params``."""
