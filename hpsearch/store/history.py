"""A study's ended trials as its sampler sees them (kept, and read only when new, by
:class:`hpsearch.store.hints.HistoryCache`).

A pruned trial comes with the objective at each step it reported (``FinishedTrial.
intermediate``): a model-based sampler ranks pruned trials by how far they got, so a pruned
trial without its steps would look as if it stopped at step 0. Completed trials come without
theirs: no sampler reads them, and they would cost a row per step.

An ended trial never changes again (completed, pruned and failed are final), so a cache that
holds what it has read stays right; each claim asks the database only which trials have ended
(an index-only scan of numbers) and reads the rows of the new ones. A study of 10 000 finished
trials is not re-read per suggestion.
"""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.objective import finite
from hpsearch.samplers import FinishedTrial
from hpsearch.states import ENDED, TrialState
from hpsearch.store.models import STORED_INFINITY, Trial, TrialIntermediate

_CHUNK = 500


def read_history(
    session: Session,
    study_id: int,
    metric: str,
    numbers: list[int] | None = None,
) -> list[FinishedTrial]:
    """Ended trials of a study (only ``numbers`` when given), by number; ``metric`` is the
    objective, whose value at each step a pruned trial carries."""
    query = select(
        Trial.number, Trial.params, Trial.state, Trial.value, Trial.feasible, Trial.violation
    ).where(Trial.study_id == study_id, Trial.state.in_(ENDED))
    rows = []
    if numbers is None:
        rows = list(session.execute(query.order_by(Trial.number)).all())
    else:
        for i in range(0, len(numbers), _CHUNK):
            chunk = numbers[i : i + _CHUNK]
            rows.extend(session.execute(query.where(Trial.number.in_(chunk))).all())
    pruned = [n for n, _, s, *_ in rows if s == TrialState.PRUNED]
    steps = _steps(session, study_id, metric, pruned) if pruned else {}
    return [
        FinishedTrial(
            number=n,
            params=p,
            state=TrialState(s),
            value=v,
            feasible=bool(f),
            violation=math.inf if viol is None or viol >= STORED_INFINITY else viol,
            intermediate=steps.get(n, {}),
        )
        for n, p, s, v, f, viol in rows
    ]


def _steps(
    session: Session, study_id: int, metric: str, numbers: list[int]
) -> dict[int, dict[int, float]]:
    """The objective's finite values by step of the trials ``numbers``, by trial number."""
    query = (
        select(Trial.number, TrialIntermediate.step, TrialIntermediate.metrics)
        .join(TrialIntermediate, TrialIntermediate.trial_id == Trial.id)
        .where(Trial.study_id == study_id)
    )
    found: dict[int, dict[int, float]] = {}
    for i in range(0, len(numbers), _CHUNK):
        chunk = numbers[i : i + _CHUNK]
        for number, step, metrics in session.execute(query.where(Trial.number.in_(chunk))):
            value = finite((metrics or {}).get(metric))
            if value is not None:
                found.setdefault(number, {})[step] = value
    return found
