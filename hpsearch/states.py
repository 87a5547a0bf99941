"""The states of studies, trials and test evaluations: the vocabulary of the queue.

``StrEnum`` members compare equal to the strings stored in the database and sent over HTTP
(``TrialState.RUNNING == "running"``), so columns, JSON and the API keep plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    """A trial's state; a test evaluation (a job like a trial) uses all but ``PRUNED``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"


class StudyState(StrEnum):
    """A study's state. It ends ``FAILED`` when every trial failed: none completed or pruned."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


# Final: a trial in one of these never changes again (what caches of ended trials rely on).
ENDED = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)
# Not yet ended: what a worker may still be running or be given.
UNENDED = (TrialState.QUEUED, TrialState.RUNNING)
# A study that may still hand out trials (a paused one after it resumes).
LIVE_STUDY = (StudyState.RUNNING, StudyState.PAUSED)
ENDED_STUDY = (StudyState.STOPPED, StudyState.COMPLETED, StudyState.FAILED)
