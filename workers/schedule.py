"""A replayed trial (``POST /trials/{id}/replay``): the hyperparameters of a PBT schedule,
changed at the epochs its lineage changed them.

PBT changes hyperparameters by starting a new trial from a checkpoint, and every trainer
(built-in, entry point, command) already knows how to resume from one with the params it is
given. So a replay does the same within one trial: it runs the trainer once per stretch of
the schedule, with that stretch's params and ``task.epochs`` cut at the stretch's last epoch;
each run resumes from the checkpoint the one before it saved, under the trial's own id. A
trainer that saves checkpoints at least at the end of its epochs (the built-in ones do, and
user code that calls ``trial.save_checkpoint`` every epoch) replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hpsearch.pbt import stretches


def follow_schedule(
    train: Callable[..., Any],
    schedule: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    task: Mapping[str, Any],
    report: Callable[[int, Mapping[str, float]], bool],
    **kwargs: Any,
) -> Any:
    """Runs ``train`` (a trainer as ``Worker._trainer_for`` gives it) once per stretch of
    ``schedule``; returns the last run's result, or the first one that ended early (pruned,
    stopped, or the worker shutting down). ``params`` are the trial's (its last stretch's);
    a stretch the trial's checkpoint already covers trains nothing and costs one resume."""
    result: Any = None
    epochs = int(task.get("epochs", 1))
    for _first, last, stretch in stretches(schedule, epochs):
        result = train({**params, **stretch}, {**task, "epochs": last}, report, **kwargs)
        if getattr(result, "stopped_early", False) or getattr(result, "epochs_run", last) < last:
            break  # told to stop, or (user code watching should_stop) it returned early
    return result
