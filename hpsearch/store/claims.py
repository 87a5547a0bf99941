"""The trial queue, the claim side: which trial a worker gets next.

Rules (data, not code scattered through the worker):

- A claim takes the oldest queued trial of the oldest running study whose trials the worker
  can run (:func:`hpsearch.tasks.unmet`: the study's required device, GPUs and labels, and
  custom code its command line allows); if there is none and
  the study may grow (budget, parallelism), it samples a new trial *inside the same
  transaction*, with the study row locked, so parallel claimers never receive the same
  suggestion.
- A lease that expires puts the trial back in the queue (the next claim is ``attempt + 1``)
  until ``max_attempts``, then the trial fails with the reason kept (as it does at once when
  its study has ended: nothing would claim it again).
- A study out of time hands out nothing more, not even queued trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from hpsearch.samplers import FinishedTrial
from hpsearch.states import LIVE_STUDY, StudyState, TrialState
from hpsearch.store import postgres
from hpsearch.store import statements as sql
from hpsearch.store.clock import utcnow
from hpsearch.store.ending import end
from hpsearch.store.history import read_history
from hpsearch.store.lease import Claim
from hpsearch.store.models import Study, Trial, TrialEvent
from hpsearch.store.rules import RulesFor, StudyKey, StudyRules
from hpsearch.store.studies import (
    finish_if_done,
    get_study,
    live_counts,
    may_finish,
    record_event,
    time_is_up,
)
from hpsearch.tasks import BARE_WORKER, Capabilities, needed_code, unmet

# (session, study, its objective metric) -> the study's ended trials
HistoryFor = Callable[[Session, StudyKey, str], list[FinishedTrial]]

# How many trials a claim samples at once for a sampler that ignores history (random, grid,
# QMC: a proposal depends on its number alone, so sampling ahead changes nothing it
# proposes). The extra ones wait in the queue, where the next claims take them with SKIP
# LOCKED and without the study row: the lock that serializes sampling is then taken once per
# AHEAD trials, not per trial. Never beyond the study's parallelism (running + queued) or
# its max_trials.
AHEAD = 16


@dataclass(frozen=True)
class ClaimRequest:
    """Who asks for a trial, and on what terms.

    ``worker``: what the worker offers; studies whose trials it may not run are passed over
    (see :func:`hpsearch.tasks.unmet`). ``after``: the trial whose completion asked for this
    claim (see :func:`claimed_after`). ``request_id``: the claim's idempotency key, kept in its
    event (see :func:`claimed_by_request`).

    ``ahead``: a trial the worker holds while its current one runs, to start it the moment
    that one ends (the completion's round trip off the slot's critical path). It is an
    ordinary lease (it heartbeats, expires and is re-queued like any other), and is given only
    where holding it costs nothing: from a study whose sampler ignores results (a proposal made
    a trial early is the same proposal), and only while the study's parallelism leaves room
    for one more trial after it, so a worker with no trial finds room (where room runs short,
    held trials are not renewed: their slots go back to claiming at each completion).
    """

    worker_id: str
    lease: timedelta
    worker: Capabilities = BARE_WORKER
    after: int | None = None
    request_id: str | None = None
    ahead: bool = False

    def granted(self, now: datetime) -> _Lease:
        detail = _detail(self.after, self.request_id)
        return _Lease(self.worker_id, now, now + self.lease, detail)


@dataclass(frozen=True)
class _Lease:
    """The lease a claim grants, and the detail of its ``claimed`` event."""

    worker_id: str
    now: datetime
    expires: datetime
    detail: str | None


def _record_claimed(connection: Connection, lease: _Lease, trial_id: int, attempt: int) -> None:
    connection.execute(
        sql.INSERT_EVENT,
        {
            "b_trial_id": trial_id,
            "b_kind": "claimed",
            "b_attempt": attempt,
            "b_worker_id": lease.worker_id,
            "b_detail": lease.detail,
            "b_created_at": lease.now,
        },
    )


def touch_worker(
    session: Session,
    worker_id: str,
    host: str,
    devices: list[str],
    labels: dict[str, str] | None = None,
) -> None:
    connection = session.connection()
    connection.execute(
        sql.upsert_worker(connection.dialect.name),
        {
            "b_id": worker_id,
            "b_host": host,
            "b_devices": devices,
            "b_labels": labels or {},
            "b_now": utcnow(),
        },
    )


def _expired(session: Session, now: datetime) -> dict[int, list[int]]:
    """Trials whose lease ran out, by study: one indexed probe, empty almost always."""
    by_study: dict[int, list[int]] = {}
    for study_id, trial_id in session.connection().execute(sql.EXPIRED, {"b_now": now}):
        by_study.setdefault(study_id, []).append(trial_id)
    return by_study


def requeue_expired(session: Session, study: Study, trial_ids: list[int], now: datetime) -> int:
    """Returns expired leases of ``study`` (locked by the caller) to the queue.

    A trial that used every attempt fails with the reason kept; so does one whose study no
    longer runs, since nothing would claim it again.
    """
    expired = session.scalars(
        select(Trial)
        .where(
            Trial.id.in_(trial_ids), Trial.state == TrialState.RUNNING, Trial.lease_expires_at < now
        )
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    max_attempts = study.spec.get("budget", {}).get("max_attempts", 3)
    for trial in expired:
        record_event(session, trial, "lease_expired", f"worker {trial.worker_id} stopped answering")
        if trial.attempt >= max_attempts or study.state not in LIVE_STUDY:
            error = (
                f"lease expired on each of {trial.attempt} attempts "
                f"(last worker: {trial.worker_id})"
                if trial.attempt >= max_attempts
                else f"lease expired (worker {trial.worker_id}) after the study was {study.state}"
            )
            # The study is asked once, below, whether it is done.
            end(session, study, trial, TrialState.FAILED, error, now=now, finish_study=False)
        else:
            trial.state = TrialState.QUEUED
            trial.lease_expires_at = None
    if expired:
        finish_if_done(session, study)
        session.flush()  # the claim that follows reads the queue with plain SQL
    return len(expired)


def claim(
    session: Session,
    request: ClaimRequest,
    rules_for: RulesFor,
    running: Sequence[StudyKey],
    history_for: HistoryFor | None = None,
    *,
    look_for_expired: bool = True,
    queue_first: bool = True,
) -> Claim | None:
    """Leases one trial of the first of the ``running`` studies (:func:`running_studies`, read
    in this transaction or kept from a moment before: the statements that take or sample a
    trial check that its study still runs) that has one for the ``request``'s worker,
    sampling a new one when it needs it.

    ``rules_for`` gives a study's parsed spec and sampler (cached); ``history_for(session,
    study, metric)`` the study's ended trials (a cache that reads only new ones); without it
    they are read whole. ``look_for_expired=False`` skips the probe for expired leases (a
    caller that probed a moment ago). ``queue_first=False``: the queue was likely empty at the
    last claim, so look at it only once the study is locked and counted, and only if it then
    holds trials (a statement fewer when it does not; a queued trial is still taken before a
    new one is sampled).

    Lock order, the same in every transaction of the store: a study row before any of its
    trial rows, and study rows in ascending id. Claimers take queued trials with ``SKIP
    LOCKED`` (never waiting on each other) and wait only on study rows, in that order, so no
    two transactions can wait on each other in a cycle.
    """
    now = utcnow()
    granted = request.granted(now)
    worker = request.worker
    connection = session.connection()
    expired = _expired(session, now) if look_for_expired else {}
    runs = dict(running)
    for sid in sorted(runs.keys() | expired.keys()):
        if sid in expired:
            requeue_expired(session, get_study(session, sid, lock=True), expired[sid], now)
        if sid not in runs:
            continue
        created = runs[sid]
        rules = rules_for(session, (sid, created))
        if time_is_up(rules.spec.budget.time_limit_s, created, now):
            # Out of time: no more trials, not even queued ones; the study ends here.
            finish_if_done(session, get_study(session, sid, lock=True))
            continue
        if sid in worker.refused_studies or unmet(rules.requires, rules.task, worker):
            continue
        if request.ahead and rules.sampler.needs_history:
            continue
        from_queue = _claim_queued(connection, sid, rules, granted) if queue_first else None
        claimed = from_queue or _sample_new(
            session, sid, rules, granted, history_for, not queue_first, request.ahead
        )
        if claimed is not None:
            return claimed
    return None


def running_studies(connection: Connection, study_id: int | None = None) -> list[StudyKey]:
    """The running studies (``study_id`` alone, if given), oldest first."""
    rows = connection.execute(sql.RUNNING_STUDIES, {"b_study_id": study_id})
    return [(sid, created) for sid, created in rows]


def claim_queued_at_once(
    connection: Connection,
    request: ClaimRequest,
    rules_for: RulesFor,
    running: Sequence[StudyKey],
) -> Claim | None:
    """The common claim on PostgreSQL, outside a transaction block: the oldest queued trial of
    the first of the ``running`` studies (:func:`running_studies`, perhaps read a moment ago)
    the worker can run (see :func:`claim`), leased and its event recorded in one statement (no
    study row lock). That statement takes nothing from a study no longer running.

    None whenever :func:`claim` has more to do: no queued trial in that study (it may sample
    one), the study out of time (it ends it) or no longer running. The caller probes for
    expired leases first.
    """
    now = utcnow()
    worker = request.worker
    for sid, created in running:
        rules = rules_for(connection, (sid, created))
        if sid not in worker.refused_studies and unmet(rules.requires, rules.task, worker) is None:
            break
    else:
        return None
    if time_is_up(rules.spec.budget.time_limit_s, created, now):
        return None
    return _claim_queued(connection, sid, rules, request.granted(now))


def passed_over(
    session: Session, rules_for: RulesFor, worker: Capabilities, study_id: int | None
) -> list[tuple[int, str, str | None, list[str] | None]]:
    """The running studies (``study_id``, if given) whose trials ``worker`` is never given:
    (study id, what it would need, the entry point or the command it would need to allow,
    if that is what it lacks)."""
    found = []
    for sid, created in running_studies(session.connection(), study_id):
        rules = rules_for(session, (sid, created))
        needs = unmet(rules.requires, rules.task, worker)
        if sid in worker.refused_studies:
            needs = "a setup that works (this one could not set it up)"
        if needs is not None:
            code = needed_code(rules.task) if needs.startswith("--allow") else (None, None)
            found.append((sid, needs, *code))
    return found


def _claimed_after(trial_id: int) -> str:
    return f"after trial {trial_id}"


def _by_request(request_id: str) -> str:
    return f"request {request_id}"


def _detail(after: int | None, request_id: str | None) -> str | None:
    """The ``claimed`` event's detail: how a resent request finds the claim it made (a
    completion's claim by the trial it completed, a plain claim by its idempotency key)."""
    if after is not None:
        return _claimed_after(after)
    return None if request_id is None else _by_request(request_id)


def claimed_by_request(
    session: Session, worker_id: str, request_id: str, rules_for: RulesFor
) -> Claim | None:
    """The claim made under the idempotency key ``request_id``, if ``worker_id`` still holds
    it: the answer to a resent claim whose first reply was lost (the server restarted, the
    connection dropped), which would otherwise take a second trial and leave the first to
    wait out its lease. Its event survives a restart; only the worker's running trials are
    looked at (through the trials' state index), so the look-up stays small."""
    found = session.execute(
        select(TrialEvent.trial_id, TrialEvent.attempt)
        .join(Trial, Trial.id == TrialEvent.trial_id)
        .where(
            Trial.state == TrialState.RUNNING,
            Trial.worker_id == worker_id,
            TrialEvent.kind == "claimed",
            TrialEvent.attempt == Trial.attempt,
            TrialEvent.detail == _by_request(request_id),
        )
        .limit(1)
    ).first()
    return _still_held(session, found, worker_id, rules_for)


def claimed_after(
    session: Session, trial_id: int, worker_id: str, rules_for: RulesFor
) -> Claim | None:
    """The claim made with the completion of ``trial_id``, if ``worker_id`` still holds it:
    the answer to a resent completion, whose first reply (and claim) was lost."""
    found = session.execute(
        select(TrialEvent.trial_id, TrialEvent.attempt)
        .where(
            TrialEvent.kind == "claimed",
            TrialEvent.worker_id == worker_id,
            TrialEvent.detail == _claimed_after(trial_id),
        )
        .order_by(TrialEvent.id.desc())
        .limit(1)
    ).first()
    return _still_held(session, found, worker_id, rules_for)


def _still_held(session: Session, found: Any, worker_id: str, rules_for: RulesFor) -> Claim | None:
    """The claim of ``found`` (a claimed event's trial id and attempt), if ``worker_id`` still
    holds that attempt's lease."""
    trial = session.get(Trial, found[0]) if found is not None else None
    if trial is None or found is None:
        return None
    if (trial.state, trial.worker_id, trial.attempt) != (TrialState.RUNNING, worker_id, found[1]):
        return None
    assert trial.lease_expires_at is not None  # a running trial is leased
    rules = rules_for(session, (trial.study_id, trial.study.created_at))
    return _leased(
        rules,
        (trial.id, trial.study_id, trial.number, trial.attempt),
        trial.params,
        trial.lease_expires_at,
        trial.last_step,
        trial.schedule,
    )


def _leased(
    rules: StudyRules,
    ids: tuple[int, int, int, int],
    params: Any,
    expires: datetime,
    resume_step: int | None,
    schedule: list[dict[str, Any]] | None = None,
) -> Claim:
    """The claim of a trial leased until ``expires``; ``ids``: trial id, study id, number,
    attempt."""
    trial_id, study_id, number, attempt = ids
    return Claim(
        trial_id,
        study_id,
        number,
        attempt,
        dict(params),
        dict(rules.task),
        expires,
        resume_step,
        judges_each_step=rules.judges_each_step,
        study_key=rules.key,
        schedule=schedule,
    )


def _claim_queued(
    connection: Connection, study_id: int, rules: StudyRules, lease: _Lease
) -> Claim | None:
    """The oldest queued trial of the study (enqueued, re-queued or released), leased and its
    event recorded (on PostgreSQL in one statement)."""
    params = {
        "b_study_id": study_id,
        "b_worker_id": lease.worker_id,
        "b_now": lease.now,
        "b_expires": lease.expires,
    }
    row: Any
    if postgres.serves(connection):
        row = postgres.claim_queued(connection, {**params, "b_detail": lease.detail})
    else:
        row = connection.execute(sql.CLAIM_QUEUED, params).first()
        if row is not None:
            _record_claimed(connection, lease, row[0], row[2])
    if row is None:
        return None
    trial_id, number, attempt, trial_params, last_step, schedule = row
    ids = (trial_id, study_id, number, attempt)
    return _leased(rules, ids, trial_params, lease.expires, last_step, schedule)


def _sample_new(
    session: Session,
    study_id: int,
    rules: StudyRules,
    lease: _Lease,
    history_for: HistoryFor | None = None,
    take_queued: bool = False,
    to_hold: bool = False,
) -> Claim | None:
    """A new trial from the sampler, already leased, its event recorded; or None.

    Locking the study row serializes sampling per study (parallel claimers never get the
    same suggestion); other studies are not held up. The common case locks and reads the row,
    then its live counts, and writes with one statement on PostgreSQL, three on SQLite (one
    more with trials sampled ahead, see ``AHEAD``); the ORM is only asked when the study may
    be ending. ``take_queued``: a queued trial first, if the count shows one. ``to_hold``: a
    trial held ahead (see :class:`ClaimRequest`), only while room for another remains after it.
    """
    now = lease.now
    connection = session.connection()
    row = connection.execute(sql.LOCK_STUDY, {"b_study_id": study_id}).one_or_none()
    if row is None:
        return None
    _, created, state, next_number, n_completed, n_pruned, n_failed, best, max_trials = row
    queued, running = live_counts(session, study_id)
    budget = rules.spec.budget
    if to_hold and running + 1 >= budget.parallelism:
        return None
    if take_queued and queued:
        claimed = _claim_queued(connection, study_id, rules, lease)
        if claimed is not None:
            return claimed
    if state != StudyState.RUNNING or next_number >= max_trials or running >= budget.parallelism:
        return None
    counters = (n_completed, n_pruned, n_failed)
    if may_finish(budget, max_trials, counters, best, created, now) and finish_if_done(
        session, get_study(session, study_id, lock=True), live=(queued, running)
    ):
        return None
    sampler = rules.sampler
    past: list[FinishedTrial] = []
    in_flight: list[dict[str, Any]] = []
    if sampler.needs_history:
        key = (study_id, created)
        metric = rules.objective.metric
        past = (
            history_for(session, key, metric)
            if history_for
            else read_history(session, study_id, metric)
        )
        in_flight = running_params(session, study_id)
    params = sampler.propose(next_number, past, in_flight)
    if params is None:
        study = get_study(session, study_id, lock=True)
        finish_if_done(session, study, exhausted=True, live=(queued, running))
        return None
    ahead = []
    if not sampler.needs_history:
        unended = running + 1 + queued  # the claimed one included
        end = min(next_number + AHEAD, next_number + 1 + budget.parallelism - unended, max_trials)
        for number in range(next_number + 1, end):
            proposal = sampler.propose(number, [], [])
            if proposal is None:
                break
            ahead.append({"b_study_id": study_id, "b_number": number, "b_params": proposal})
    if ahead:
        connection.execute(sql.INSERT_QUEUED_TRIAL, [{**a, "b_now": now} for a in ahead])
    next_free = next_number + 1 + len(ahead)
    values = {
        "b_study_id": study_id,
        "b_number": next_number,
        "b_params": params,
        "b_worker_id": lease.worker_id,
        "b_now": now,
        "b_expires": lease.expires,
    }
    if postgres.serves(connection):
        extra = {"b_next_number": next_free, "b_detail": lease.detail}
        trial_id = postgres.insert_leased(connection, {**values, **extra})
    else:
        trial_id = connection.scalar(sql.INSERT_LEASED_TRIAL, values)
        connection.execute(
            sql.SET_NEXT_NUMBER, {"b_study_id": study_id, "b_next_number": next_free}
        )
        _record_claimed(connection, lease, trial_id, 1)
    claimed = _leased(rules, (trial_id, study_id, next_number, 1), params, lease.expires, None)
    return claimed if ahead else replace(claimed, queue_may_hold_more=False)


def running_params(session: Session, study_id: int) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            select(Trial.params).where(
                Trial.study_id == study_id, Trial.state == TrialState.RUNNING
            )
        )
    )
