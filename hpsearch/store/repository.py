"""The store's public face: each method is one transaction over the repository functions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidInput, InvalidState
from hpsearch.samplers import Sampler, make_sampler
from hpsearch.space import SpaceError
from hpsearch.spec import StudySpec, parse_spec, spec_to_json
from hpsearch.store import queue
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.models import Study, Trial, TrialEvent, TrialIntermediate, Worker
from hpsearch.store.studies import (
    StudyCounts,
    counts,
    finish_if_done,
    get_study,
    get_trial,
    spec_of,
    study_row,
    trials_page,
)

_TRANSITIONS = {
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "stop": ({"running", "paused"}, "stopped"),
}


@dataclass(frozen=True)
class StudyView:
    study: Study
    counts: StudyCounts
    best: Trial | None


@dataclass(frozen=True)
class TrialView:
    trial: Trial
    intermediates: list[TrialIntermediate]
    events: list[TrialEvent]


class Store:
    def __init__(self, db: Database, lease_seconds: float = 60.0) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        # Samplers are rebuilt from the (immutable) spec; caching them per study saves the
        # parse on every claim. Safe across server processes: nothing here is authoritative.
        self._samplers: OrderedDict[int, Sampler] = OrderedDict()

    # -- studies -------------------------------------------------------------------------

    def create_study(self, data: Mapping[str, Any]) -> Study:
        spec = parse_spec(data)
        with self.db.write() as s:
            study = study_row(spec, spec_to_json(spec))
            s.add(study)
            s.flush()
            return study

    def list_studies(self, state: str | None = None) -> list[StudyView]:
        with self.db.read() as s:
            query = select(Study).order_by(Study.id.desc())
            if state:
                query = query.where(Study.state == state)
            return [self._view(s, study) for study in s.scalars(query)]

    def get_study(self, study_id: int) -> StudyView:
        with self.db.read() as s:
            return self._view(s, get_study(s, study_id))

    def spec(self, study_id: int) -> StudySpec:
        with self.db.read() as s:
            return spec_of(get_study(s, study_id))

    def set_study_state(self, study_id: int, action: str) -> StudyView:
        allowed, target = _TRANSITIONS[action]
        with self.db.write() as s:
            study = get_study(s, study_id, lock=True)
            if study.state not in allowed:
                raise InvalidState(f"cannot {action} a study that is {study.state}")
            study.state, study.updated_at = target, utcnow()
            if target == "stopped":
                study.reason, study.finished_at = "stopped by user", utcnow()
                s.execute(
                    update(Trial)
                    .where(Trial.study_id == study_id, Trial.state == "running")
                    .values(stop_requested=True)
                )
            elif target == "running":
                finish_if_done(s, study)
            return self._view(s, study)

    def delete_study(self, study_id: int) -> None:
        with self.db.write() as s:
            get_study(s, study_id, lock=True)
            s.execute(delete(Study).where(Study.id == study_id))

    def enqueue(self, study_id: int, params: Mapping[str, Any]) -> Trial:
        """Queues a user's configuration ahead of the sampler's next proposal."""
        with self.db.write() as s:
            study = get_study(s, study_id, lock=True)
            if study.state in ("stopped", "completed"):
                raise InvalidState(f"study {study_id} is {study.state}")
            try:
                clean = spec_of(study).build_space().validate(params)
            except SpaceError as e:
                raise InvalidInput("params", str(e)) from None
            trial = Trial(
                study_id=study_id,
                number=study.next_number,
                params=clean,
                state="queued",
                source="user",
                attempt=0,
                stop_requested=False,
                metrics={},
                created_at=utcnow(),
            )
            study.next_number += 1
            budget = dict(study.spec["budget"])
            # An enqueued guess adds to the budget rather than displacing a sampled trial.
            budget["max_trials"] = budget.get("max_trials", 0) + 1
            study.spec = {**study.spec, "budget": budget}
            s.add(trial)
            s.flush()
            return trial

    def trials(
        self,
        study_id: int,
        *,
        order: str = "number",
        offset: int = 0,
        limit: int = 100,
        states: Sequence[str] = (),
    ) -> list[Trial]:
        with self.db.read() as s:
            get_study(s, study_id)
            return trials_page(s, study_id, order=order, offset=offset, limit=limit, states=states)

    def trial(self, trial_id: int) -> TrialView:
        with self.db.read() as s:
            trial = get_trial(s, trial_id)
            return TrialView(trial, list(trial.intermediates), list(trial.events))

    def intermediates(self, study_id: int) -> dict[int, list[TrialIntermediate]]:
        with self.db.read() as s:
            rows = s.execute(
                select(Trial.id, TrialIntermediate)
                .join(TrialIntermediate, TrialIntermediate.trial_id == Trial.id)
                .where(Trial.study_id == study_id)
                .order_by(Trial.id, TrialIntermediate.step)
            ).all()
            out: dict[int, list[TrialIntermediate]] = {}
            for trial_id, point in rows:
                out.setdefault(trial_id, []).append(point)
            return out

    def workers(self) -> list[Worker]:
        with self.db.read() as s:
            return list(s.scalars(select(Worker).order_by(Worker.last_seen_at.desc())))

    # -- the queue -----------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        host: str = "",
        devices: Sequence[str] = (),
        study_id: int | None = None,
    ) -> queue.Claim | None:
        with self.db.write() as s:
            queue.touch_worker(s, worker_id, host, list(devices))
            return queue.claim(s, worker_id, self.lease, self._sampler_for, study_id)

    def has_open_studies(self, study_id: int | None = None) -> bool:
        """Whether a worker should wait for more work (a study could still produce trials)."""
        with self.db.read() as s:
            query = select(Study.id).where(Study.state.in_(("running", "paused")))
            if study_id is not None:
                query = query.where(Study.id == study_id)
            return s.scalars(query.limit(1)).first() is not None

    def heartbeat(self, trial_id: int, worker_id: str, attempt: int) -> queue.ReportAck:
        with self.db.write() as s:
            return queue.heartbeat(s, trial_id, worker_id, attempt, self.lease)

    def report(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        step: int,
        metrics: Mapping[str, float | None],
    ) -> queue.ReportAck:
        with self.db.write() as s:
            return queue.report(s, trial_id, worker_id, attempt, step, metrics, self.lease)

    def complete(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        metrics: Mapping[str, float | None],
        pruned: bool = False,
    ) -> Trial:
        with self.db.write() as s:
            return queue.complete(s, trial_id, worker_id, attempt, metrics, pruned)

    def fail(self, trial_id: int, worker_id: str, attempt: int, error: str) -> Trial:
        with self.db.write() as s:
            return queue.fail(s, trial_id, worker_id, attempt, error)

    def release(self, trial_id: int, worker_id: str, attempt: int, why: str) -> Trial:
        with self.db.write() as s:
            return queue.release(s, trial_id, worker_id, attempt, why)

    def stop_trial(self, trial_id: int) -> Trial:
        with self.db.write() as s:
            return queue.request_stop(s, trial_id)

    # -- internals -----------------------------------------------------------------------

    def _view(self, s: Session, study: Study) -> StudyView:
        best = s.get(Trial, study.best_trial_id) if study.best_trial_id else None
        return StudyView(study, counts(s, study), best)

    def _sampler_for(self, study: Study) -> Sampler:
        sampler = self._samplers.get(study.id)
        if sampler is None:
            sampler = make_sampler(spec_of(study))
            self._samplers[study.id] = sampler
            if len(self._samplers) > 256:
                self._samplers.popitem(last=False)
        return sampler
