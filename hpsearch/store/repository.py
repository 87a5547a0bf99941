"""The store's public face: each method is one transaction over the repository functions
(or joins the one that ``Store.together`` holds open)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hpsearch.errors import InvalidState, NotFound
from hpsearch.pbt import Link, Segment
from hpsearch.samplers import FinishedTrial, make_sampler
from hpsearch.spec import StudySpec, parse_spec, spec_to_json
from hpsearch.states import ENDED_STUDY, LIVE_STUDY, StudyState, TrialState
from hpsearch.store import (
    by_hand,
    checkpoints,
    claims,
    completion,
    evaluations,
    forks,
    gauges,
    health,
    imports,
    pbt,
    postgres,
    queue,
    results,
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
from hpsearch.store.pruning import prune_decision
from hpsearch.store.rules import StudyKey
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
from hpsearch.tasks import Capabilities, capabilities, describe_requires, unmet

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


class Store:
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

    def held_trial_started(self, trial_id: int, worker_id: str, when: datetime) -> None:
        """A trial ``worker_id`` held ahead started at ``when`` (it says so with the completion
        of the trial before it): its first attempt's start is then, not its claim. Nothing for
        a trial it no longer holds, or a retried one (whose start is its first attempt's)."""
        statement = (
            update(Trial)
            .where(
                Trial.id == trial_id,
                Trial.worker_id == worker_id,
                Trial.state == TrialState.RUNNING,
                Trial.attempt == 1,
            )
            .values(started_at=when)
        )
        if self._fast is not None:  # one statement, its own transaction (the hot path's way)
            with self._fast.connection() as connection:
                connection.execute(statement)
            return
        with self.db.write() as s:  # on SQLite, inside the completion's transaction
            s.execute(statement)

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

    # -- the queue -----------------------------------------------------------------------

    @contextmanager
    def together(self) -> Iterator[None]:
        """On SQLite, the store calls made inside commit as one transaction (a completion and
        the claim it carries: one BEGIN, one commit, the write lock taken once); an error
        rolls back all of them. On PostgreSQL, whose hot writes are each one statement
        outside a transaction block (holding their row locks for no round trip longer), they
        stay apart."""
        if self._fast is not None:
            yield
            return
        with self.db.one_transaction():
            yield

    def claim(
        self,
        worker_id: str,
        host: str = "",
        devices: Sequence[str] = (),
        study_id: int | None = None,
        after: int | None = None,
        entry_points: Collection[str] = (),
        commands: Collection[Sequence[str]] = (),
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        refused_studies: Collection[int] = (),
        ahead: bool = False,
    ) -> Claim | None:
        """The worker's next trial; ``after``: the trial whose completion asks for it;
        ``entry_points`` and ``commands``: the custom trainers and the command prefixes the
        worker's command line allows; ``request_id``: the claim's idempotency key, kept with
        the claim (see :meth:`claimed_by_request`); ``labels``: its ``--label``s (with
        ``devices``, matched against a study's ``requires``); ``refused_studies``: those it
        found it cannot set up; ``ahead``: a trial the worker holds while its current one
        runs (see :class:`claims.ClaimRequest`)."""
        worker = capabilities(devices, labels, entry_points, refused_studies, commands)
        claimed = self._claim(worker_id, host, study_id, after, worker, request_id, ahead)
        if claimed is not None and claimed.study_key is not None:
            # Its completion, likely through this process, then need not read its study.
            self._hints.claimed_studies.put(claimed.trial_id, claimed.study_key)
        return claimed

    def _claim(
        self,
        worker_id: str,
        host: str,
        study_id: int | None,
        after: int | None,
        worker: Capabilities,
        request_id: str | None = None,
        ahead: bool = False,
    ) -> Claim | None:
        labels = tuple(sorted(worker.labels.items()))
        touch = self._hints.worker_touch.due((worker_id, host, worker.devices, labels))
        look_for_expired = self._hints.expired_probe.due(None)
        # The one-statement claim only takes a queued trial. Where the last claim found none
        # (a study whose parallelism leaves nothing to sample ahead), it would be a wasted
        # round trip, and so would the transaction's own look at the queue before it locks
        # the study: it then looks only if the study's count shows queued trials.
        likely_queued = study_id not in self._hints.queue_found_empty
        request = claims.ClaimRequest(worker_id, self.lease, worker, after, request_id, ahead)
        # A claim ahead counts the study's trials first, with the study locked.
        fast = not (touch or look_for_expired or ahead)
        if self._fast is not None and likely_queued and fast:
            with self._fast.connection() as connection:
                running = self._hints.running.get(
                    study_id, lambda: claims.running_studies(connection, study_id)
                )
                claimed = claims.claim_queued_at_once(connection, request, self._rules.get, running)
            if claimed is not None:
                return claimed
        with self.db.write() as s:
            if touch:
                claims.touch_worker(s, worker_id, host, list(worker.devices), dict(labels))

            def claim_by(running: list[StudyKey], look_for_expired: bool) -> Claim | None:
                return claims.claim(
                    s,
                    request,
                    self._rules.get,
                    running,
                    self._hints.history.history,
                    look_for_expired=look_for_expired,
                    queue_first=likely_queued and not ahead,
                )

            # SQLite has no one-statement claim: the kept studies are tried here first.
            kept = None if self._fast is not None else self._hints.running.kept(study_id)
            claimed = claim_by(kept, look_for_expired) if kept is not None else None
            if claimed is None:
                # Read afresh, in the transaction: whatever a claim by the kept ones missed.
                running = claims.running_studies(s.connection(), study_id)
                self._hints.running.put(study_id, running)
                if running != kept:
                    claimed = claim_by(running, look_for_expired and kept is None)
        if claimed is None or claimed.queue_may_hold_more:
            self._hints.queue_found_empty.pop(study_id)
        else:
            self._hints.queue_found_empty.put(study_id, True)
        return claimed

    def claimed_after(self, trial_id: int, worker_id: str) -> Claim | None:
        """The claim made with the completion of ``trial_id``, if ``worker_id`` holds it: a
        trial (found by its claim's event) or a final test evaluation. A worker runs one job
        at a time, so an evaluation it holds while it resends a completion was handed out to
        it with that completion's lost reply (or with an earlier claim's)."""
        with self.db.read() as s:
            trial = claims.claimed_after(s, trial_id, worker_id, self._rules.get)
            return trial or evaluations.held_by(s, worker_id, utcnow())

    def claimed_by_request(self, worker_id: str, request_id: str) -> Claim | None:
        """The trial a claim with idempotency key ``request_id`` was given, if ``worker_id``
        still holds it: the answer to that claim resent."""
        with self.db.read() as s:
            return claims.claimed_by_request(s, worker_id, request_id, self._rules.get)

    def passed_over(
        self, worker: Capabilities, study_id: int | None = None
    ) -> list[tuple[int, str, str | None, list[str] | None]]:
        """Running studies whose trials ``worker`` may not run: (study id, what it would
        need, the entry point or command it would need to allow, if that is what it lacks).
        Claims pass them over; a worker says why it waits."""
        with self.db.read() as s:
            return claims.passed_over(s, self._rules.get, worker, study_id)

    def waiting(self, study_id: int | None = None) -> list[tuple[int, str]]:
        """What a worker that found nothing to claim waits for: the open studies
        (``study_id`` alone, if given) that hand out nothing now, and why in words."""
        with self.db.read() as s:
            query = select(Study.id, Study.state, Study.reason).where(Study.state.in_(LIVE_STUDY))
            if study_id is not None:
                query = query.where(Study.id == study_id)
            rows = s.execute(query.order_by(Study.id).limit(20)).all()
        return [
            (
                sid,
                f"study {sid} is paused" + (f" ({reason})" if reason else "")
                if state == StudyState.PAUSED
                else f"study {sid} has no trial to hand out now (its trials are all running)",
            )
            for sid, state, reason in rows
        ]

    def has_open_studies(self, study_id: int | None = None) -> bool:
        """Whether a worker should wait for more work (a study could still produce trials)."""
        with self.db.read() as s:
            query = select(Study.id).where(Study.state.in_(LIVE_STUDY))
            if study_id is not None:
                query = query.where(Study.id == study_id)
            return s.scalars(query.limit(1)).first() is not None

    def _report_at_once(
        self, holder: Holder, steps: queue.Steps
    ) -> tuple[queue.ReportAck, queue.Steps] | None:
        """A report or heartbeat as one statement on PostgreSQL (see :mod:`.postgres`); None
        on SQLite, or when the lease is not held: the transaction then says why."""
        if self._fast is None:
            return None
        return self._fast.report(holder, steps)

    def heartbeat(self, trial_id: int, worker_id: str, attempt: int) -> queue.ReportAck:
        holder = Holder(trial_id, worker_id, attempt)
        done = self._report_at_once(holder, ())
        if done is not None:
            return done[0]
        with self.db.write() as s:
            return queue.heartbeat(s, holder, self.lease)

    def report(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        step: int,
        metrics: Mapping[str, float | None],
        earlier: queue.Steps = (),
    ) -> queue.ReportAck:
        """One step's metrics, after the ``earlier`` steps the worker held back, if any."""
        steps = [*earlier, (step, metrics)]
        judge = pbt.StepJudge(prune_decision)
        holder = Holder(trial_id, worker_id, attempt)
        done = self._report_at_once(holder, steps)
        if done is not None:
            ack, to_judge = done
            if not to_judge:
                return ack
            with self.db.write() as s:
                # Locked and checked again: the lease may have been lost since.
                trial = queue.held(s, holder)
                reason = queue.judge(s, trial, to_judge, judge)
            ack = queue.ReportAck(reason is not None, reason, ack.lease_expires_at)
        else:
            with self.db.write() as s:
                ack = queue.report(s, holder, steps, self.lease, prune=judge)
        if judge.exploit is not None:
            # Its own transaction: it locks the study, which the report's must not (it holds
            # the trial; the store locks a study before its trials).
            pbt.queue_exploit_safely(self.db.write, judge.exploit, self.copy_checkpoint)
        return ack

    def complete(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        metrics: Mapping[str, float | None],
        pruned: bool = False,
        steps: queue.Steps = (),
    ) -> Trial:
        """Ends a trial, storing first the ``steps`` its worker had not reported yet."""
        c = completion.Completion(Holder(trial_id, worker_id, attempt), metrics, pruned, steps)
        study_key = self._hints.claimed_studies.pop(trial_id)
        if self._fast is not None:
            done = self._fast.complete(c, study_key)
            if done is not None:
                if done.may_end_study or done.trial.state == TrialState.FAILED:
                    with self.db.write() as s:
                        if done.may_end_study:
                            finish_if_done(s, get_study(s, done.trial.study_id, lock=True))
                        if done.trial.state == TrialState.FAILED:
                            health.note_failure(s, worker_id)
                return done.trial
        # Elsewhere, or to say why that ended nothing (a lost lease, a resent completion).
        with self.db.write() as s:
            trial = completion.complete(s, c, self._rules.get)
            if trial.state == TrialState.FAILED:  # it never reported its objective
                health.note_failure(s, worker_id)
            return trial

    def fail(self, trial_id: int, worker_id: str, attempt: int, error: str) -> Trial:
        with self.db.write() as s:
            trial = queue.fail(s, Holder(trial_id, worker_id, attempt), error)
            health.note_failure(s, worker_id)
            return trial

    def worker_unhealthy(self, worker_id: str) -> str | None:
        """Why ``worker_id`` is unhealthy (see :mod:`hpsearch.store.health`), or None."""
        with self.db.read() as s:
            return health.unhealthy(s, worker_id)

    def release(self, trial_id: int, worker_id: str, attempt: int, why: str) -> Trial:
        with self.db.write() as s:
            return queue.release(s, Holder(trial_id, worker_id, attempt), why)

    def stop_trial(self, trial_id: int) -> Trial:
        with self.db.write() as s:
            return queue.request_stop(s, trial_id)

    # -- checkpoints, forks, the final test evaluation (store/checkpoints.py, forks.py,
    # -- evaluations.py) ---------------------------------------------------------------

    def record_checkpoint(
        self,
        trial_id: int,
        worker_id: str,
        attempt: int,
        step: int,
        publish: Callable[[bool], object],
    ) -> None:
        with self.db.write() as s:
            holder = Holder(trial_id, worker_id, attempt)
            checkpoints.record(s, holder, step, self.lease, publish)

    def trial_state(self, trial_id: int) -> str:
        """The trial's state; NotFound for an unknown trial."""
        with self.db.read() as s:
            state = s.scalars(select(Trial.state).where(Trial.id == trial_id)).first()
            if state is None:
                raise NotFound(f"trial {trial_id} does not exist")
            return state

    def holds_lease(self, trial_id: int, worker_id: str, attempt: int) -> bool:
        """Whether ``worker_id`` holds ``attempt`` of the trial's lease, or of its final test
        evaluation's: a read, which extends nothing."""
        with self.db.read() as s:
            return checkpoints.readable_by_holder(s, Holder(trial_id, worker_id, attempt))

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

    def final_evaluation_heartbeat(self, trial_id: int, worker_id: str, attempt: int) -> datetime:
        with self.db.write() as s:
            return evaluations.heartbeat(s, Holder(trial_id, worker_id, attempt), self.lease)

    def complete_final_evaluation(
        self, trial_id: int, worker_id: str, attempt: int, metrics: Mapping[str, float | None]
    ) -> FinalEvaluation:
        with self.db.write() as s:
            return evaluations.complete(s, Holder(trial_id, worker_id, attempt), metrics)

    def fail_final_evaluation(
        self, trial_id: int, worker_id: str, attempt: int, error: str
    ) -> FinalEvaluation:
        with self.db.write() as s:
            return evaluations.fail(s, Holder(trial_id, worker_id, attempt), error)

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
