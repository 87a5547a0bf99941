"""The SQL side of pruning: answers a pruner's questions about one step, in the report's
transaction. The rules themselves live in :mod:`hpsearch.pruning`.

Each question reads one step of the study (``trial_intermediates`` by the unique
``(trial_id, step)`` index, joined from the study's trials), never whole curves, and a report at
a step the pruner does not judge reads nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.pruning import Pruner, make_pruner
from hpsearch.spec import ObjectiveSpec, PrunerSpec
from hpsearch.states import TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.models import Study, Trial, TrialEvent, TrialIntermediate

_PRUNER_SPEC: TypeAdapter[PrunerSpec] = TypeAdapter(PrunerSpec)


def pruner_of(spec: Mapping[str, Any]) -> Pruner | None:
    """The pruner of a stored study spec (already validated at submission); None if none."""
    raw = spec.get("pruner")
    if not raw or raw.get("kind") == "none":
        return None
    try:
        return make_pruner(
            _PRUNER_SPEC.validate_python(raw),
            ObjectiveSpec.model_validate(spec["objective"]),
            study_name=spec.get("name", ""),
            epochs=spec.get("task", {}).get("epochs", 1),
        )
    except ValidationError:
        return None  # written by a newer version with keys this one does not know


def prune_decision(
    session: Session, trial: Trial, step: int, metrics: Mapping[str, float | None]
) -> str | None:
    """The report hook of :func:`hpsearch.store.queue.report`: the reason to stop, or None.

    A decision to stop is also written to the trial's history, with its reason.
    """
    # The study row, read once per report the pruner judges: its spec names the pruner.
    study = session.get(Study, trial.study_id)
    if study is None:
        return None
    pruner = pruner_of(study.spec)
    if pruner is None or not pruner.judges(step) or pruner.metric not in metrics:
        return None
    if step >= study.spec.get("task", {}).get("epochs", step + 1):
        return None  # the trial's last step: it is done, nothing is saved by stopping it
    reason = pruner.decide(step, metrics[pruner.metric], _SqlCurves(session, study, trial, pruner))
    if reason is not None:
        session.add(
            TrialEvent(
                trial_id=trial.id,
                kind="prune",
                attempt=trial.attempt,
                worker_id=trial.worker_id,
                detail=reason,
                created_at=utcnow(),
            )
        )
    return reason


class _SqlCurves:
    def __init__(self, session: Session, study: Study, trial: Trial, pruner: Pruner) -> None:
        self.session = session
        self.study = study
        self.trial = trial
        self.value = TrialIntermediate.metrics[pruner.metric].as_float()
        self.direction = pruner.direction

    def best_so_far(self, step: int) -> float | None:
        values = self.session.scalars(
            select(self.value).where(
                TrialIntermediate.trial_id == self.trial.id, TrialIntermediate.step <= step
            )
        ).all()
        numbers = [float(v) for v in values if v is not None]
        if not numbers:
            return None
        return max(numbers) if self.direction == "maximize" else min(numbers)

    def others_at(self, step: int, *, completed_only: bool) -> Sequence[float | None]:
        query = (
            select(self.value)
            .join(Trial, Trial.id == TrialIntermediate.trial_id)
            .where(
                Trial.study_id == self.study.id,
                Trial.id != self.trial.id,
                TrialIntermediate.step == step,
            )
        )
        if completed_only:
            query = query.where(Trial.state == TrialState.COMPLETED)
        return self.session.scalars(query).all()

    def n_completed(self) -> int:
        return self.study.n_completed

    @property
    def number(self) -> int:
        return self.trial.number

    def numbered_others_at(self, step: int) -> Sequence[tuple[int, float | None]]:
        query = (
            select(Trial.number, self.value)
            .join(Trial, Trial.id == TrialIntermediate.trial_id)
            .where(
                Trial.study_id == self.study.id,
                Trial.id != self.trial.id,
                TrialIntermediate.step == step,
            )
        )
        return [(n, v) for n, v in self.session.execute(query).all()]
