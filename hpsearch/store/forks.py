"""Forks ("Panda" mode): a new trial that continues another trial's training from its
checkpoint, with some hyperparameters changed (a lower learning rate, more weight decay).

The fork is an ordinary queued trial of the same study (``source="fork"``,
``parent_trial_id``); a worker that claims it finds the parent's checkpoint under the fork's
own id and resumes at the epoch after it. Only hyperparameters that keep the network's shape
may change, and the new values must lie inside the study's space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from hpsearch import tasks
from hpsearch.errors import InvalidInput, InvalidState
from hpsearch.space import SpaceError
from hpsearch.states import StudyState
from hpsearch.store.clock import utcnow
from hpsearch.store.models import Study, Trial
from hpsearch.store.studies import (
    add_to_budget,
    lock_study_then_trial,
    queue_ahead_of_sampler,
    queued_trial,
    spec_of,
)


def fork(
    session: Session,
    trial_id: int,
    changes: Mapping[str, Any],
    checkpoint_step: int,
    copy_checkpoint: Callable[[Trial], object],
) -> Trial:
    """Queues a fork of ``trial_id`` whose params are the parent's overridden by ``changes``.

    ``checkpoint_step`` is the epoch the parent's checkpoint ends; ``copy_checkpoint(fork)``
    gives the new trial that checkpoint before the transaction commits, so no worker can
    claim the fork before its checkpoint is in place.
    """
    # The store's one lock order: the study, then its trial.
    study, parent = lock_study_then_trial(session, trial_id)
    if study.state == StudyState.STOPPED:
        raise InvalidState(f"study {study.id} is stopped")
    spec = spec_of(study)
    if checkpoint_step >= spec.task.epochs:
        raise InvalidState(
            f"trial {trial_id}'s checkpoint is at its last epoch ({checkpoint_step} of "
            f"{spec.task.epochs}): a fork would have nothing left to train"
        )
    try:
        params = spec.build_space().validate({**parent.params, **changes})
    except SpaceError as e:
        raise InvalidInput("params", str(e)) from None
    if spec.task.trainer in tasks.TRAINERS:
        for name in sorted(tasks.MODEL_SHAPE & set(changes)):
            if params[name] != parent.params.get(name):
                raise InvalidInput(
                    f"params.{name}",
                    "changes the network's shape; a fork continues the parent's weights, so it "
                    f"can change only hyperparameters that keep it "
                    f"(not {sorted(tasks.MODEL_SHAPE)})",
                )
    if study.state == StudyState.COMPLETED:
        # Babysitting one model: stopping its only trial ended the study; the fork goes on.
        study.state, study.reason, study.finished_at = StudyState.RUNNING, None, None
    trial = queue_fork(session, study, parent, params, checkpoint_step, "fork")
    copy_checkpoint(trial)
    return trial


def queue_fork(
    session: Session,
    study: Study,
    parent: Trial,
    params: dict[str, Any],
    checkpoint_step: int,
    source: str,
    *,
    ahead_of_sampler: bool = True,
) -> Trial:
    """Queues a trial of the (locked) ``study`` that goes on from ``parent``'s checkpoint at
    ``checkpoint_step`` with ``params`` (a fork, or a PBT exploit); it still needs the
    checkpoint copied under its id before the transaction commits. A user's fork runs next;
    with ``ahead_of_sampler`` False it queues behind the trials already sampled."""
    if ahead_of_sampler:
        number = queue_ahead_of_sampler(session, study)
    else:
        number, study.next_number = study.next_number, study.next_number + 1
    trial = queued_trial(study, number, params, source)
    trial.parent_trial_id, trial.checkpoint_step = parent.id, checkpoint_step
    # Like an enqueued guess, a fork adds to the budget rather than displacing a trial.
    add_to_budget(study, 1)
    study.updated_at = utcnow()
    session.add(trial)
    session.flush()
    return trial
