"""The store's public face: each method is one transaction over the repository functions
(or joins the one that ``Store.together`` holds open). The trial queue's calls (claim,
report, complete, ...) are in :mod:`hpsearch.store.queue_calls`; the studies', the results
view's, checkpoints', forks' and the final test evaluation's are here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, NotFound
from hpsearch.pbt import Link, Segment
from hpsearch.samplers import FinishedTrial, make_sampler
from hpsearch.spec import StudySpec, parse_spec, spec_to_json
from hpsearch.states import ENDED_STUDY, StudyState, TrialState
from hpsearch.store import (
    by_hand,
    checkpoints,
    evaluations,
    forks,
    gauges,
    imports,
    pbt,
    postgres,
    results,
    trial_table,
)
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.hints import Hints
from hpsearch.store.history import read_history
from hpsearch.store.lease import Claim, Holder
from hpsearch.store.models import (
    FinalEvaluation,
    Study,
    Trial,
    TrialEvent,
    TrialIntermediate,
    Worker,
)
from hpsearch.store.queue_calls import QueueCalls
from hpsearch.store.studies import (
    StudyCounts,
    counts,
    drop_sampled_ahead,
    finish_if_done,
    get_study,
    get_trial,
    queue_ahead_of_sampler,
    queued_trial,
    spec_of,
    study_row,
    trials_page,
)
from hpsearch.tasks import capabilities, describe_requires, unmet
from hpsearch.trial_query import TrialQuery

_TRANSITIONS = {
    "pause": ({StudyState.RUNNING}, StudyState.PAUSED),
    "resume": ({StudyState.PAUSED}, StudyState.RUNNING),
    "stop": ({StudyState.RUNNING, StudyState.PAUSED}, StudyState.STOPPED),
}


@dataclass(frozen=True)
class StudyView:
    study: Study
    counts: StudyCounts
    best: Trial | None
    objective: str
    """The objective and constraints in words (hpsearch.objective.Objective.describe)."""
    final_evaluation: FinalEvaluation | None = None
    """Read by ``get_study`` only (a study page), not for each study of a list."""
    waiting_for: str | None = None
    """Read by ``get_study`` only: what a running study's ``requires`` asks of a worker,
    when no live worker meets it ("device cuda, label site=lab2")."""


@dataclass(frozen=True)
class TrialView:
    trial: Trial
    intermediates: list[TrialIntermediate]
    events: list[TrialEvent]


class Store(QueueCalls):
    def __init__(
        self, db: Database, lease_seconds: float = 60.0, probe_seconds: float = 0.0
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        # What this process remembers between requests: hints, never the truth.
        self._hints = Hints(probe_seconds)
        self._rules = self._hints.rules
        # PostgreSQL's one-statement paths (hpsearch/store/postgres.py); SQLite has none and
        # takes the general path, a transaction, for every request.
        self._fast = postgres.FastPath(db, self.lease, self._rules.get) if db.is_postgres else None
        # How a PBT exploit gives its new trial the donor's checkpoint: the artifact store's
        # copy, which the server sets (None: the new trial starts without one).
        self.copy_checkpoint: pbt.CopyCheckpoint | None = None

    # -- studies -------------------------------------------------------------------------

    def create_study(self, data: Mapping[str, Any]) -> Study:
        spec = parse_spec(data)
        make_sampler(spec)  # refuses, naming sampler.kind, a sampler this server cannot run
        with self.db.write() as s:
            study = study_row(spec, spec_to_json(spec))
            s.add(study)
            s.flush()
        self._hints.running.clear()
        return study

    def list_studies(self, state: str | None = None) -> list[StudyView]:
        with self.db.read() as s:
            query = select(Study).order_by(Study.id.desc())
            if state:
                query = query.where(Study.state == state)
            return [self._view(s, study) for study in s.scalars(query)]

    def get_study(self, study_id: int) -> StudyView:
        with self.db.read() as s:
            view = self._view(s, get_study(s, study_id))
            return replace(
                view,
                final_evaluation=evaluations.of_study(s, study_id),
                waiting_for=self._waiting_for(s, view.study),
            )

    def _waiting_for(self, s: Session, study: Study) -> str | None:
        """What ``study`` waits for in a worker, if it requires what no live worker has: one
        heard from within two leases (a claim), or holding a trial (its heartbeats)."""
        requires = study.spec.get("requires") or {}
        wanted = describe_requires(requires)
        if wanted is None or study.state != StudyState.RUNNING:
            return None
        since = utcnow() - 2 * self.lease
        busy = select(Trial.worker_id).where(Trial.state == TrialState.RUNNING)
        live = s.scalars(select(Worker).where((Worker.last_seen_at >= since) | Worker.id.in_(busy)))
        for w in live:
            if unmet(requires, {}, capabilities(w.devices, w.labels)) is None:
                return None
        return wanted

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
            if target == StudyState.STOPPED:
                study.reason, study.finished_at = "stopped by user", utcnow()
                s.execute(
                    update(Trial)
                    .where(Trial.study_id == study_id, Trial.state == TrialState.RUNNING)
                    .values(stop_requested=True)
                )
                drop_sampled_ahead(s, study_id)
            elif target == StudyState.RUNNING:
                finish_if_done(s, study)
            view = self._view(s, study)
        # Once committed: a claim in between would read, and keep, the state before.
        self._hints.running.clear()
        return view

    def delete_study(self, study_id: int) -> None:
        with self.db.write() as s:
            get_study(s, study_id, lock=True)
            s.execute(delete(Study).where(Study.id == study_id))

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], add_to_budget: bool = True
    ) -> Trial:
        """Queues a user's configuration ahead of the sampler's trials; parameters it leaves
        out are proposed by the study's sampler. It adds one to the budget rather than
        displacing a sampled trial, unless ``add_to_budget`` is False (see by_hand)."""
        with self.db.write() as s:
            study = get_study(s, study_id, lock=True)
            if study.state in ENDED_STUDY:
                raise InvalidState(
                    f"study {study_id} is {study.state}"
                    + (
                        "; extend it to give it more trials"
                        if study.state == StudyState.COMPLETED
                        else ""
                    )
                )
            number = queue_ahead_of_sampler(s, study)
            clean = by_hand.complete_params(s, study, number, params)
            by_hand.take_budget(study, number, add_to_budget)
            trial = queued_trial(study, number, clean, "user")
            s.add(trial)
            s.flush()
            return trial

    def extend_study(self, study_id: int, n_trials: int) -> StudyView:
        """``n_trials`` more for the study; a completed one runs again."""
        with self.db.write() as s:
            study = get_study(s, study_id, lock=True)
            by_hand.extend(s, study, n_trials)
            view = self._view(s, study)
        self._hints.running.clear()  # as set_study_state: claims must see it running again
        return view

    def trial_of_study(self, study_id: int, number: int) -> TrialView:
        """A trial by the identity users see: its study and its number there."""
        with self.db.read() as s:
            get_study(s, study_id)
            trial_id = s.scalar(
                select(Trial.id).where(Trial.study_id == study_id, Trial.number == number)
            )
            if trial_id is None:
                raise NotFound(f"study {study_id} has no trial {number}")
            trial = get_trial(s, trial_id)
            return TrialView(trial, list(trial.intermediates), list(trial.events))

    def import_history(self, study_id: int, records: Sequence[Mapping[str, Any]]) -> int:
        """Adds ended trials from elsewhere (e.g. an Optuna study) as the study's history."""
        with self.db.write() as s:
            study = get_study(s, study_id, lock=True)
            return len(imports.import_history(s, study, records))

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

    def trial_page_ids(
        self, study_id: int, query: TrialQuery, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[int], int]:
        """The ids of a page of the study's trials sorted and filtered by any column, and
        how many trials meet the filter (see store/trial_table.py)."""
        with self.db.read() as s:
            get_study(s, study_id)
            return trial_table.page_ids(s, study_id, query, offset=offset, limit=limit)

    def trials_by_id(self, ids: Sequence[int]) -> list[Trial]:
        with self.db.read() as s:
            return trial_table.trials_by_id(s, ids)

    def history(self, study_id: int) -> list[FinishedTrial]:
        """The study's ended trials as its sampler sees them (e.g. for coarse-to-fine regions)."""
        with self.db.read() as s:
            study = get_study(s, study_id)
            rules = self._rules.get(s, (study.id, study.created_at))
            return read_history(s, study_id, rules.objective.metric)

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

    def queue_gauges(self) -> gauges.QueueGauges:
        """The queue of each unfinished study and the workers alive, for ``/metrics``."""
        with self.db.read() as s:
            return gauges.queue_gauges(s, utcnow(), self.lease)

    # -- the results view (light rows; see store/results.py) -------------------------------

    def trial_points(
        self,
        study_id: int,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[results.TrialPoint]:
        with self.db.read() as s:
            get_study(s, study_id)
            return results.trial_points(s, study_id, metrics, since)

    def trial_records(self, study_id: int) -> list[results.TrialRecord]:
        with self.db.read() as s:
            get_study(s, study_id)
            return results.trial_records(s, study_id)

    def curves(self, trial_ids: Sequence[int]) -> list[results.TrialCurve]:
        with self.db.read() as s:
            return results.curves(s, trial_ids)

    def worker_exited(self, worker_id: str) -> bool:
        """Records that ``worker_id`` left; False for a worker never seen."""
        with self.db.write() as s:
            found = s.get(Worker, worker_id)
            if found is None:
                return False
            found.exited_at = utcnow()
        # Its next claim (a restart under the same id) refreshes its row, clearing the exit,
        # rather than waiting out the throttle on refreshing workers' rows.
        self._hints.worker_touch.reset()
        return True

    def worker_activity(self) -> list[results.WorkerActivity]:
        with self.db.read() as s:
            return results.worker_activity(s)

    # -- checkpoints, forks, the final test evaluation (store/checkpoints.py, forks.py,
    # -- evaluations.py) ---------------------------------------------------------------

    def record_checkpoint(
        self, holder: Holder, step: int, publish: Callable[[bool], object]
    ) -> None:
        with self.db.write() as s:
            checkpoints.record(s, holder, step, self.lease, publish)

    def trial_state(self, trial_id: int) -> str:
        """The trial's state; NotFound for an unknown trial."""
        with self.db.read() as s:
            state = s.scalars(select(Trial.state).where(Trial.id == trial_id)).first()
            if state is None:
                raise NotFound(f"trial {trial_id} does not exist")
            return state

    def holds_lease(self, holder: Holder) -> bool:
        """Whether ``holder`` holds the trial's lease, or its final test evaluation's: a
        read, which extends nothing."""
        with self.db.read() as s:
            return checkpoints.readable_by_holder(s, holder)

    def checkpoint_step(self, trial_id: int) -> int | None:
        with self.db.read() as s:
            return checkpoints.step_of(s, trial_id)

    def lineage(self, study_id: int) -> dict[int, Link]:
        """Every trial of the study with the PBT parent it copied, and at which epoch."""
        with self.db.read() as s:
            get_study(s, study_id)
            return pbt.lineage(s, study_id)

    def schedule(self, trial_id: int) -> list[Segment]:
        """The hyperparameters the trial's model trained with, epoch range by range."""
        with self.db.read() as s:
            return pbt.schedule_of(s, get_trial(s, trial_id))

    def replay_trial(self, trial_id: int) -> Trial:
        """Queues a new trial that trains ``trial_id``'s PBT schedule from scratch."""
        with self.db.write() as s:
            replayed = pbt.queue_replay(s, trial_id)
        self._hints.running.clear()  # as extend_study: a completed study runs again
        return replayed

    def fork_trial(
        self,
        trial_id: int,
        changes: Mapping[str, Any],
        checkpoint_step: int,
        copy_checkpoint: Callable[[Trial], object],
    ) -> Trial:
        with self.db.write() as s:
            return forks.fork(s, trial_id, changes, checkpoint_step, copy_checkpoint)

    def request_final_evaluation(self, study_id: int, trial_id: int | None) -> FinalEvaluation:
        with self.db.write() as s:
            evaluation = evaluations.request(s, study_id, trial_id)
        self._hints.evaluation_probe.reset()
        return evaluation

    def final_evaluation(self, study_id: int) -> FinalEvaluation | None:
        with self.db.read() as s:
            get_study(s, study_id)
            return evaluations.of_study(s, study_id)

    def claim_final_evaluation(self, worker_id: str, study_id: int | None = None) -> Claim | None:
        if not self._hints.evaluation_probe.due(study_id):
            return None
        with self.db.read() as s:  # the common case, nothing to do, takes no write lock
            if not evaluations.claimable(s, study_id, utcnow()):
                return None
        with self.db.write() as s:
            return evaluations.claim(s, worker_id, self.lease, study_id)

    def has_pending_final_evaluation(self, study_id: int | None = None) -> bool:
        with self.db.read() as s:
            return evaluations.pending(s, study_id)

    def final_evaluation_heartbeat(self, holder: Holder) -> datetime:
        with self.db.write() as s:
            return evaluations.heartbeat(s, holder, self.lease)

    def complete_final_evaluation(
        self, holder: Holder, metrics: Mapping[str, float | None]
    ) -> FinalEvaluation:
        with self.db.write() as s:
            return evaluations.complete(s, holder, metrics)

    def fail_final_evaluation(self, holder: Holder, error: str) -> FinalEvaluation:
        with self.db.write() as s:
            return evaluations.fail(s, holder, error)

    # -- internals -----------------------------------------------------------------------

    def _view(self, s: Session, study: Study) -> StudyView:
        best = s.get(Trial, study.best_trial_id) if study.best_trial_id else None
        # A list of studies would otherwise parse every spec on every request; the objective
        # of a study never changes.
        key = (study.id, study.created_at)
        objective = self._hints.objectives.get(key)
        if objective is None:
            objective = spec_of(study).build_objective().describe()
            self._hints.objectives.put(key, objective)
        return StudyView(study, counts(s, study), best, objective)
