"""The store's calls for the trial queue: a worker's claim, heartbeat, report, completion,
failure and release, and a user's stop of one trial. Each is one transaction (or, on
PostgreSQL, one statement on the fast path: :mod:`hpsearch.store.postgres`) over the queue's
functions (:mod:`.claims`, :mod:`.queue`, :mod:`.completion`).

Mixed into :class:`hpsearch.store.repository.Store`, which owns the state these calls share
(the database, the lease, the process's hints and the fast path); callers use ``Store``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import select, update

from hpsearch.states import LIVE_STUDY, StudyState, TrialState
from hpsearch.store import claims, completion, ending, evaluations, health, pbt, postgres, queue
from hpsearch.store.clock import utcnow
from hpsearch.store.db import Database
from hpsearch.store.hints import Hints, RulesCache
from hpsearch.store.lease import Claim, Holder, Steps
from hpsearch.store.models import Study, Trial
from hpsearch.store.pruning import prune_decision
from hpsearch.store.rules import StudyKey
from hpsearch.store.studies import finish_if_done, get_study
from hpsearch.tasks import Capabilities, capabilities


class QueueCalls:
    """The queue's side of :class:`~hpsearch.store.repository.Store`."""

    # Set by Store.__init__.
    db: Database
    lease: timedelta
    _hints: Hints
    _rules: RulesCache
    _fast: postgres.FastPath | None
    copy_checkpoint: pbt.CopyCheckpoint | None

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

    def _report_at_once(self, holder: Holder, steps: Steps) -> tuple[queue.ReportAck, Steps] | None:
        """A report or heartbeat as one statement on PostgreSQL (see :mod:`.postgres`); None
        on SQLite, or when the lease is not held: the transaction then says why."""
        if self._fast is None:
            return None
        return self._fast.report(holder, steps)

    def heartbeat(self, holder: Holder) -> queue.ReportAck:
        done = self._report_at_once(holder, ())
        if done is not None:
            return done[0]
        with self.db.write() as s:
            return queue.heartbeat(s, holder, self.lease)

    def report(
        self,
        holder: Holder,
        step: int,
        metrics: Mapping[str, float | None],
        earlier: Steps = (),
    ) -> queue.ReportAck:
        """One step's metrics, after the ``earlier`` steps the worker held back, if any."""
        steps = [*earlier, (step, metrics)]
        judge = pbt.StepJudge(prune_decision)
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
        holder: Holder,
        metrics: Mapping[str, float | None],
        pruned: bool = False,
        steps: Steps = (),
    ) -> Trial:
        """Ends a trial, storing first the ``steps`` its worker had not reported yet."""
        c = ending.Completion(holder, metrics, pruned, steps)
        study_key = self._hints.claimed_studies.pop(holder.trial_id)
        if self._fast is not None:
            done = self._fast.complete(c, study_key)
            if done is not None:
                if done.may_end_study or done.trial.state == TrialState.FAILED:
                    with self.db.write() as s:
                        if done.may_end_study:
                            finish_if_done(s, get_study(s, done.trial.study_id, lock=True))
                        if done.trial.state == TrialState.FAILED:
                            health.note_failure(s, holder.worker_id)
                return done.trial
        # Elsewhere, or to say why that ended nothing (a lost lease, a resent completion).
        with self.db.write() as s:
            trial = completion.complete(s, c, self._rules.get)
            if trial.state == TrialState.FAILED:  # it never reported its objective
                health.note_failure(s, holder.worker_id)
            return trial

    def fail(self, holder: Holder, error: str) -> Trial:
        with self.db.write() as s:
            trial = queue.fail(s, holder, error)
            health.note_failure(s, holder.worker_id)
            return trial

    def worker_unhealthy(self, worker_id: str) -> str | None:
        """Why ``worker_id`` is unhealthy (see :mod:`hpsearch.store.health`), or None."""
        with self.db.read() as s:
            return health.unhealthy(s, worker_id)

    def release(self, holder: Holder, why: str) -> Trial:
        with self.db.write() as s:
            return queue.release(s, holder, why)

    def stop_trial(self, trial_id: int) -> Trial:
        with self.db.write() as s:
            return queue.request_stop(s, trial_id)
