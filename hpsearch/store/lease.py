"""Leases: who may act on a running trial or test evaluation, one rule for both.

A claimed job (a trial, or a study's final test evaluation) is leased to one worker for one
attempt until ``lease_expires_at``; a re-queued job's next claim is ``attempt + 1``. A request
acts on the job only while its :class:`Holder` (job, worker, attempt) still holds that lease;
otherwise :func:`check_lease` refuses it with :class:`LeaseLost`, saying why, and nothing changes. A
holder that resends an ending it already made (its first reply was lost) is recognised by
:func:`already_ended` and gets the same answer again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from hpsearch.errors import LeaseLost
from hpsearch.states import TrialState
from hpsearch.store.clock import utcnow


@dataclass(frozen=True)
class Holder:
    """Who acts on a leased job: the trial (or the trial whose test evaluation it is), the
    worker, and the attempt it was given."""

    trial_id: int
    worker_id: str
    attempt: int


# What a holder reports: (step, metrics) pairs, oldest first.
Steps = Sequence[tuple[int, Mapping[str, float | None]]]


@dataclass(frozen=True)
class Claim:
    """A leased job as its worker is told of it: a trial to train (``kind="train"``), or a
    completed trial whose final model to evaluate on the test set (``"evaluate_test"``)."""

    trial_id: int
    study_id: int
    number: int
    attempt: int
    params: dict[str, Any]
    task: dict[str, Any]
    lease_expires_at: datetime
    # The checkpoint step to resume from; of a test evaluation, the trial's last trained
    # epoch (the checkpoint that holds its final model).
    resume_step: int | None
    kind: Literal["train", "evaluate_test"] = "train"
    # A pruner judges each reported step, so the worker must send each one as it comes.
    judges_each_step: bool = False
    # (study id, creation time): the key of the study's cached rules, for the completion.
    study_key: tuple[int, datetime] | None = None
    # False when the trial was sampled for this claim with none left queued beside it: the
    # study's queue was empty, and the next claim will likely sample too.
    queue_may_hold_more: bool = True
    # A replay's schedule ([{"first_epoch", "params"}, ...]); None: train with ``params``.
    schedule: list[dict[str, Any]] | None = None

    def holder(self, worker_id: str) -> Holder:
        """The job's lease as held by ``worker_id``, the worker it was claimed for."""
        return Holder(self.trial_id, worker_id, self.attempt)


class Leased(Protocol):
    """A row that is leased: a trial or a final evaluation."""

    worker_id: str | None
    attempt: int
    state: str
    lease_expires_at: datetime | None


def check_lease(job: Leased, holder: Holder, what: str) -> None:
    """Raises LeaseLost, saying why, unless ``holder`` still holds ``job``'s lease now.
    ``what`` names the job in the message (``trial 7``)."""
    if job.worker_id != holder.worker_id or job.attempt != holder.attempt:
        raise LeaseLost(
            f"{what} attempt {holder.attempt} is no longer leased to "
            f"{holder.worker_id} (now attempt {job.attempt} of {job.worker_id})"
        )
    if job.state != TrialState.RUNNING:
        raise LeaseLost(f"{what} is {job.state}, not running")
    if job.lease_expires_at is not None and job.lease_expires_at < utcnow():
        raise LeaseLost(f"{what}'s lease expired at {job.lease_expires_at}")


def holds_lease(job: Leased, holder: Holder) -> bool:
    """Whether ``holder`` still holds ``job``'s lease (:func:`check_lease` without the
    reason)."""
    try:
        check_lease(job, holder, "")
    except LeaseLost:
        return False
    return True


def already_ended(job: Leased, holder: Holder, states: Collection[str]) -> bool:
    """Whether ``holder`` itself already ended ``job`` in one of ``states``: a resent ending."""
    return (
        job.state in states and job.worker_id == holder.worker_id and job.attempt == holder.attempt
    )
