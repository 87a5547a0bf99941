"""History from elsewhere (an Optuna study, an earlier search): ended trials added to a study.

Imported trials are ranked like the study's own, feed its samplers (coarse-to-fine zooms in
on them, TPE learns from them), and add to the budget rather than consume it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from hpsearch.errors import InvalidInput, InvalidState
from hpsearch.objective import finite_metrics
from hpsearch.space import SpaceError
from hpsearch.states import ENDED_STUDY, TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.ending import count_ended
from hpsearch.store.models import STORED_INFINITY, Study, Trial
from hpsearch.store.studies import add_to_budget, spec_of

IMPORTABLE_STATES = (TrialState.COMPLETED, TrialState.PRUNED)


def import_history(
    session: Session, study: Study, records: Sequence[Mapping[str, Any]]
) -> list[Trial]:
    """Adds ``records`` (``{params, metrics, state}``) as ended trials of ``study``."""
    if study.state in ENDED_STUDY:
        raise InvalidState(f"study {study.id} is {study.state}")
    spec = spec_of(study)
    space, objective = spec.build_space(), spec.build_objective()
    now = utcnow()
    trials: list[Trial] = []
    for i, record in enumerate(records):
        state = record.get("state", TrialState.COMPLETED)
        if state not in IMPORTABLE_STATES:
            raise InvalidInput(f"trials.{i}.state", f"must be one of {list(IMPORTABLE_STATES)}")
        try:
            params = space.validate(record["params"])
        except SpaceError as e:
            raise InvalidInput(f"trials.{i}.params", str(e)) from None
        metrics = finite_metrics(record.get("metrics", {}))
        evaluation = objective.evaluate(metrics)
        trials.append(
            Trial(
                study_id=study.id,
                number=study.next_number + i,
                params=params,
                state=state,
                source="import",
                attempt=0,
                stop_requested=False,
                metrics=metrics,
                value=evaluation.value,
                feasible=evaluation.feasible,
                violation=min(evaluation.violation, STORED_INFINITY),
                created_at=now,
                finished_at=now,
            )
        )
    session.add_all(trials)
    session.flush()
    for trial in trials:
        count_ended(session, study, trial)
    study.next_number += len(trials)
    add_to_budget(study, len(trials))
    return trials
