"""The SQL side of population-based training: the exploit decision at a report, the new trial
it queues, and the lineage it leaves. The rules live in :mod:`hpsearch.pbt`.

An exploit happens in two transactions, each taking locks in the store's one order (a study
before its trials):

1. the report's: a trial in the bottom quantile at an exploit epoch is told to stop (like a
   pruned one: its worker ends it ``pruned``), with an ``exploit`` event saying why and which
   top trial it copies; the decision (:class:`Exploit`) is handed out of the transaction.
2. :func:`queue_exploit`, right after: the study locked, a new trial is queued with the top
   trial's perturbed hyperparameters and a copy of its checkpoint (like a fork), with an
   ``explore`` event and its lineage row (:class:`~hpsearch.store.models.PbtExploit`).

So the population keeps its size: each trial stopped is replaced by one that goes on from a
better checkpoint. Like a fork, the new trial adds one to the study's budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch import pbt, tasks
from hpsearch.errors import HpsearchError, InvalidState
from hpsearch.spec import PbtSchedulerSpec, SchedulerSpec
from hpsearch.states import LIVE_STUDY, StudyState, TrialState
from hpsearch.store.clock import utcnow
from hpsearch.store.forks import queue_fork
from hpsearch.store.models import PbtExploit, Study, Trial, TrialIntermediate
from hpsearch.store.studies import (
    add_to_budget,
    get_study,
    lock_study_then_trial,
    queue_ahead_of_sampler,
    queued_trial,
    record_event,
    spec_of,
)

log = logging.getLogger(__name__)

_SCHEDULER: TypeAdapter[SchedulerSpec] = TypeAdapter(SchedulerSpec)

CopyCheckpoint = Callable[[int, int], int]
"""``copy(donor_trial_id, new_trial_id)``: gives the new trial the donor's latest checkpoint
and returns the epoch it ends (the artifact store's side, which the server sets as
``Store.copy_checkpoint``: :func:`hpsearch.artifact_store.copy_latest_checkpoint`)."""


def pbt_of(spec: Mapping[str, Any]) -> pbt.Pbt | None:
    """The PBT settings of a stored study spec; None when it has no PBT scheduler."""
    raw = spec.get("scheduler")
    if not raw or raw.get("kind") != "pbt":
        return None
    try:
        cfg = _SCHEDULER.validate_python(raw)
    except ValidationError:
        return None  # written by a newer version with keys this one does not know
    assert isinstance(cfg, PbtSchedulerSpec)
    return pbt.Pbt(
        cfg.population, cfg.interval, cfg.quantile, tuple(cfg.perturb), cfg.resample_probability
    )


@dataclass(frozen=True)
class Exploit:
    """A decision to replace trial ``replaced_id`` by a copy of ``donor_id`` at epoch ``step``."""

    study_id: int
    replaced_id: int
    donor_id: int
    step: int


class StepJudge:
    """The judge of a report's steps (``queue.judge``'s ``prune``): the study's pruner, then
    PBT's exploit decision, which it keeps in :attr:`exploit` for :func:`queue_exploit`."""

    def __init__(self, prune: Callable[..., str | None]) -> None:
        self.prune = prune
        self.exploit: Exploit | None = None

    def __call__(
        self, session: Session, trial: Trial, step: int, metrics: Mapping[str, float | None]
    ) -> str | None:
        reason = self.prune(session, trial, step, metrics)
        if reason is not None:
            return reason
        decided = decide(session, trial, step, metrics)
        if decided is None:
            return None
        self.exploit, reason = decided
        return reason


def decide(
    session: Session, trial: Trial, step: int, metrics: Mapping[str, float | None]
) -> tuple[Exploit, str] | None:
    """Whether ``trial``, reporting ``step``, is replaced; with the reason, written to its
    history as an ``exploit`` event."""
    study = session.get(Study, trial.study_id)
    if study is None:
        return None
    config = pbt_of(study.spec)
    if config is None or not config.judges(step):
        return None
    if step >= study.spec.get("task", {}).get("epochs", step + 1):
        return None  # its last epoch: it is done
    objective = study.spec["objective"]
    metric, direction = objective["metric"], objective["direction"]
    if metric not in metrics:
        return None
    value = TrialIntermediate.metrics[metric].as_float()
    rows = session.execute(
        select(Trial.id, Trial.number, Trial.checkpoint_step, Trial.state, value)
        .join(TrialIntermediate, TrialIntermediate.trial_id == Trial.id)
        .where(Trial.study_id == study.id, TrialIntermediate.step == step)
    ).all()
    values = {number: v for _, number, _, _, v in rows}
    values[trial.number] = metrics[metric]
    top = set(pbt.donors(config, trial.number, values, direction))
    epochs = study.spec["task"]["epochs"]
    # A donor needs a checkpoint with epochs left after it, and must not have failed.
    usable = sorted(
        (number, trial_id, at)
        for trial_id, number, at, state, _ in rows
        if number in top and at is not None and at < epochs and state != TrialState.FAILED
    )
    if not usable:
        return None
    seed = study.spec.get("sampler", {}).get("seed")
    rng = pbt.exploit_rng(seed, study.name, trial.number, step)
    number, donor_id, at = usable[int(rng.integers(len(usable)))]
    mine = values[trial.number]
    shown = "not a number" if mine is None else f"{mine:.4g}"
    reason = (
        f"pbt: {metric} {shown} at epoch {step} is among the worst "
        f"{pbt.quantile_size(len(values), config.quantile)} of the {len(values)} trials there; "
        f"replaced by a copy of trial #{number} (epoch {at})"
    )
    record_event(session, trial, "exploit", reason)
    return Exploit(study.id, trial.id, donor_id, step), reason


def queue_exploit(session: Session, exploit: Exploit, copy: CopyCheckpoint | None) -> Trial | None:
    """Queues the trial that replaces ``exploit.replaced_id``: the donor's hyperparameters
    perturbed, starting from the donor's checkpoint. None when the study no longer runs."""
    study = get_study(session, exploit.study_id, lock=True)
    if study.state not in LIVE_STUDY:
        return None
    donor = session.get(Trial, exploit.donor_id)
    replaced = session.get(Trial, exploit.replaced_id)
    if donor is None or replaced is None or donor.checkpoint_step is None:
        return None
    spec = spec_of(study)
    config = pbt_of(study.spec)
    assert config is not None
    frozen = tasks.MODEL_SHAPE if spec.task.trainer in tasks.TRAINERS else frozenset()
    rng = pbt.exploit_rng(spec.sampler.seed, study.name, replaced.number, exploit.step, 1)
    params = pbt.perturb(spec.build_space(), donor.params, config, rng, frozen)
    # Behind the population's members already sampled: they start before any copy.
    trial = queue_fork(
        session, study, donor, params, donor.checkpoint_step, "pbt", ahead_of_sampler=False
    )
    exploit_row = PbtExploit(
        study_id=study.id,
        trial_id=trial.id,
        parent_trial_id=donor.id,
        replaced_trial_id=replaced.id,
        step=donor.checkpoint_step,
        created_at=trial.created_at,
    )
    session.add(exploit_row)
    if copy is not None:
        # The donor may have saved a newer checkpoint since its row was read: the copy's.
        trial.checkpoint_step = exploit_row.step = copy(donor.id, trial.id)
        if trial.checkpoint_step >= spec.task.epochs:
            raise InvalidState(f"trial {donor.id} finished meanwhile: nothing is left to train")
    changes = ", ".join(
        f"{name} {donor.params.get(name)!r} -> {value!r}"
        for name, value in params.items()
        if value != donor.params.get(name)
    )
    record_event(
        session,
        trial,
        "explore",
        f"pbt: copies trial #{donor.number} at epoch {trial.checkpoint_step} in place of "
        f"trial #{replaced.number}; {changes or 'no hyperparameter changed'}",
    )
    return trial


def queue_exploit_safely(
    session_factory: Callable[[], Any], exploit: Exploit, copy: CopyCheckpoint | None
) -> Trial | None:
    """:func:`queue_exploit` in its own write transaction; an exploit that cannot be queued
    (its donor's checkpoint vanished meanwhile) is logged, and the population is one short."""
    try:
        with session_factory() as s:
            return queue_exploit(s, exploit, copy)
    except HpsearchError as e:
        log.warning("pbt: the exploit of trial %s was not queued: %s", exploit.replaced_id, e)
        return None


def queue_replay(session: Session, trial_id: int) -> Trial:
    """Queues a replay of ``trial_id``'s schedule: a new trial of the study, trained from
    scratch with the hyperparameters its lineage had over time (``schedule`` kept on the
    trial; the worker changes them at the epochs recorded). Like a fork, it runs next and adds
    one to the budget; a completed study runs again for it."""
    study, trial = lock_study_then_trial(session, trial_id)
    if study.state == StudyState.STOPPED:
        raise InvalidState(f"study {study.id} is stopped")
    if trial.state not in (TrialState.COMPLETED, TrialState.PRUNED):
        raise InvalidState(
            f"trial {trial_id} is {trial.state}: only an ended trial's schedule is final "
            "(replay a completed or pruned trial)"
        )
    segments = schedule_of(session, trial)
    if study.state == StudyState.COMPLETED:
        study.state, study.reason, study.finished_at = StudyState.RUNNING, None, None
    replayed = queued_trial(study, queue_ahead_of_sampler(session, study), trial.params, "replay")
    replayed.parent_trial_id, replayed.schedule = trial.id, pbt.stored(segments)
    add_to_budget(study, 1)
    study.updated_at = utcnow()
    session.add(replayed)
    session.flush()
    stretches = "; ".join(
        f"epochs {s.first}-{s.last if s.last is not None else '…'} as trial #{s.number}"
        for s in segments
    )
    record_event(session, replayed, "replay", f"replays trial #{trial.number}: {stretches}")
    return replayed


def lineage(session: Session, study_id: int) -> dict[int, pbt.Link]:
    """Every trial of the study as a link of its lineage (parent and epoch for PBT's copies)."""
    parents = {
        row.trial_id: (row.parent_trial_id, row.step)
        for row in session.scalars(select(PbtExploit).where(PbtExploit.study_id == study_id))
    }
    trials = session.execute(
        select(Trial.id, Trial.number, Trial.params, Trial.last_step).where(
            Trial.study_id == study_id
        )
    ).all()
    links = {}
    for trial_id, number, params, last in trials:
        parent, step = parents.get(trial_id, (None, None))
        links[trial_id] = pbt.Link(trial_id, number, dict(params), parent, step, last)
    return links


def schedule_of(session: Session, trial: Trial) -> list[pbt.Segment]:
    """The hyperparameters ``trial``'s model was trained with, over its lineage's epochs (a
    replay's: the schedule it was given, every stretch trained by itself)."""
    if trial.schedule is None:
        return pbt.schedule(trial.id, lineage(session, trial.study_id), trial.last_step)
    firsts = [int(s["first_epoch"]) for s in trial.schedule]
    lasts: list[int | None] = [f - 1 for f in firsts[1:]]
    lasts.append(trial.last_step)
    return [
        pbt.Segment(first, last, trial.id, trial.number, dict(s["params"]))
        for first, last, s in zip(firsts, lasts, trial.schedule, strict=True)
    ]
