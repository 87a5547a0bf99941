"""Request and response bodies: pydantic models, separate from the ORM models."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hpsearch.client import MAX_ERROR_CHARS, MAX_LOG_PIECE_CHARS
from hpsearch.objective import diverged
from hpsearch.store.lease import Claim, Holder
from hpsearch.store.models import (
    Study,
    Trial,
    Worker,
)
from hpsearch.store.repository import StudyView, TrialView
from hpsearch.store.worker_requests import Claimed, Where

Metrics = dict[str, float | None]
# Metric names a worker may report: the same shape as names in a spec, bounded in length.
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")]
# A name that does not match is refused, which the schema says with additionalProperties.
ReportedMetrics = Annotated[
    dict[MetricName, float | None], Field(json_schema_extra={"additionalProperties": False})
]
# Ids are SQL integers (32-bit on PostgreSQL): a larger number names nothing, and must not
# reach the database (where it overflows) — it is refused as input instead.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Attempt = Annotated[int, Field(ge=1, le=MAX_ID)]
StudyId = Annotated[int, Path(ge=1, le=MAX_ID)]
TrialId = Annotated[int, Path(ge=1, le=MAX_ID)]
# A trial's number in its study: from 0.
TrialNumber = Annotated[int, Path(ge=0, le=MAX_ID)]


def _utc(value: datetime) -> datetime:
    # The store keeps naive UTC; the API says so (RFC 3339 needs the offset).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
EntryPoint = Annotated[str, StringConstraints(min_length=1, max_length=300)]
ArgvItem = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
ParamValues = dict[str, bool | int | float | str]


class _Body(BaseModel):
    # Strict: a worker's ``"pruned": 0`` or ``"study_id": false`` is a bug to refuse, not a
    # value to guess at (numbers may still be integers where a float is asked for).
    model_config = ConfigDict(extra="forbid", strict=True)


class FieldProblem(BaseModel):
    field: str
    message: str
    line: int | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[FieldProblem] = Field(default_factory=list)


class Created(BaseModel):
    id: int
    url: str


class TrialOut(BaseModel):
    id: int
    study_id: int
    number: int
    state: str
    source: str
    params: dict[str, Any]
    metrics: Metrics
    value: float | None
    feasible: bool | None
    attempt: int
    worker_id: str | None
    last_step: int | None
    error: str | None
    stop_requested: bool
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    parent_trial_id: int | None = None
    """The trial this one was forked from (it started from that trial's checkpoint)."""
    checkpoint_step: int | None = None
    """The epoch its latest checkpoint ends (GET /trials/{id}/checkpoint); None: none yet."""
    test_metrics: Metrics | None = None
    """Set only on the study's final trial, by the test evaluation; never used to select."""
    diverged: bool = False
    """Completed with a NaN or infinite objective: it ranks below every finite value."""
    url: str = ""
    """The trial's web page, by the identity users see: /studies/{study_id}/trials/{number}."""

    @classmethod
    def of(cls, t: Trial) -> Self:
        return cls(
            url=f"/studies/{t.study_id}/trials/{t.number}",
            id=t.id,
            study_id=t.study_id,
            number=t.number,
            state=t.state,
            source=t.source,
            params=t.params,
            metrics=t.metrics,
            value=t.value,
            feasible=t.feasible,
            attempt=t.attempt,
            worker_id=t.worker_id,
            last_step=t.last_step,
            error=t.error,
            stop_requested=t.stop_requested,
            created_at=t.created_at,
            started_at=t.started_at,
            finished_at=t.finished_at,
            parent_trial_id=t.parent_trial_id,
            checkpoint_step=t.checkpoint_step,
            test_metrics=t.test_metrics,
            diverged=diverged(t.state, t.value),
        )


class _FromRow(BaseModel):
    """A reply read straight off a row's attributes of the same names."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, row: object) -> Self:
        return cls.model_validate(row)


class FinalEvaluationOut(_FromRow):
    """The study's final test evaluation: which trial, and where the job stands."""

    trial_id: int
    state: str
    source: str
    attempt: int
    worker_id: str | None
    error: str | None
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class CountsOut(BaseModel):
    queued: int
    running: int
    completed: int
    pruned: int
    failed: int
    max_trials: int


class StudyOut(BaseModel):
    id: int
    name: str
    state: str
    reason: str | None
    objective: str
    counts: CountsOut
    best: TrialOut | None
    final_evaluation: FinalEvaluationOut | None = None
    spec: dict[str, Any]
    created_at: UtcDateTime
    updated_at: UtcDateTime
    finished_at: UtcDateTime | None
    waiting_for: str | None = None
    """A running study whose ``requires`` no live worker meets: what it waits for, finishing
    "waiting for a worker with …" (``device cuda, label site=lab2``). Read by GET
    /studies/{id}, not the list."""

    @classmethod
    def of(cls, v: StudyView) -> StudyOut:
        s: Study = v.study
        return cls(
            id=s.id,
            name=s.name,
            state=s.state,
            reason=s.reason,
            objective=v.objective,
            counts=CountsOut(
                queued=v.counts.queued,
                running=v.counts.running,
                completed=v.counts.completed,
                pruned=v.counts.pruned,
                failed=v.counts.failed,
                max_trials=s.spec["budget"]["max_trials"],
            ),
            best=TrialOut.of(v.best) if v.best else None,
            final_evaluation=(
                FinalEvaluationOut.of(v.final_evaluation) if v.final_evaluation else None
            ),
            spec=s.spec,
            created_at=s.created_at,
            updated_at=s.updated_at,
            finished_at=s.finished_at,
            waiting_for=v.waiting_for,
        )


class IntermediateOut(_FromRow):
    step: int
    attempt: int
    metrics: Metrics


class EventOut(_FromRow):
    kind: str
    attempt: int
    worker_id: str | None
    detail: str | None
    created_at: UtcDateTime


class TrialDetailOut(TrialOut):
    intermediates: list[IntermediateOut]
    events: list[EventOut]

    @classmethod
    def of_view(cls, v: TrialView) -> TrialDetailOut:
        base = TrialOut.of(v.trial).model_dump()
        return cls(
            **base,
            intermediates=[IntermediateOut.of(p) for p in v.intermediates],
            events=[EventOut.of(e) for e in v.events],
        )


class WorkerOut(BaseModel):
    id: str
    host: str
    devices: list[Any]
    last_seen_at: UtcDateTime
    labels: dict[str, str] = Field(default_factory=dict)
    unhealthy: str | None = None
    """Why the worker stopped claiming (its last trials all failed); None while healthy."""
    exited_at: UtcDateTime | None = None
    """When the worker said it was leaving; None while it works (or if it was lost)."""

    @classmethod
    def of(cls, w: Worker) -> WorkerOut:
        return cls(
            id=w.id,
            host=w.host,
            devices=w.devices,
            last_seen_at=w.last_seen_at,
            labels=w.labels or {},
            unhealthy=w.unhealthy,
            exited_at=w.exited_at,
        )


class WorkerExitIn(_Body):
    worker_id: str = Field(min_length=1, max_length=200)


class EnqueueIn(_Body):
    params: ParamValues = Field(
        description="some or all of the space's parameters; the study's sampler proposes the rest"
    )
    add_to_budget: bool = Field(
        default=True,
        description="true: the trial adds one to the study's max_trials; false: it takes one "
        "of the trials the budget still has (refused when none is left), as in Optuna",
    )


class ExtendIn(_Body):
    n_trials: int = Field(ge=1, le=1_000_000, description="trials added to max_trials")


class NextClaimIn(_Body):
    """Where a worker claims: what a completion's ``claim_next`` says (see ClaimIn)."""

    host: str = Field(default="", max_length=255)
    devices: list[str] = Field(default_factory=list, max_length=64)
    study_id: Id | None = None
    entry_points: list[EntryPoint] = Field(
        default_factory=list,
        max_length=64,
        description="the custom trainers (`module:function`) the worker's command line allows "
        "(`--allow`): it is only given trials of built-in trainers and of these",
    )
    commands: list[Annotated[list[ArgvItem], Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=64,
        description="the argv prefixes the worker's command line allows (`--allow-command`): "
        "it is given trials of trainer `command` only when their command starts with one",
    )
    labels: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")],
        Annotated[str, Field(max_length=200)],
    ] = Field(
        default_factory=dict,
        max_length=20,
        description="the worker's `--label key=value` pairs: it is only given trials of "
        "studies whose `requires.labels` it has (and whose device and GPU count it meets)",
    )
    refused_studies: list[Id] = Field(
        default_factory=list,
        max_length=1000,
        description="studies the worker found it cannot set up (a missing dataset, an import "
        "error, no CUDA): it is given none of their trials",
    )
    ahead: bool = Field(
        default=False,
        description="a trial to hold ahead, started when the worker's current one ends: given "
        "only from a study whose sampler ignores results (random, grid, QMC), only while the "
        "study's parallelism leaves room for another trial after it, and never a final test "
        "evaluation",
    )

    def where(self) -> Where:
        return Where(**{f.name: getattr(self, f.name) for f in fields(Where)})


class ClaimIn(NextClaimIn):
    worker_id: str = Field(min_length=1, max_length=200)
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="an idempotency key, new for each claim and the same when it is resent: "
        "a claim resent with it (its reply was lost) gets the trial and attempt the first "
        "was given, while the worker holds it, rather than a second trial",
    )


class ClaimedTrial(BaseModel):
    id: int = Field(description="the trial's id, as everywhere else (/trials/{id})")
    study_id: int
    number: int
    attempt: int
    params: dict[str, Any]
    task: dict[str, Any]
    lease_expires_at: UtcDateTime
    resume_step: int | None
    # "evaluate_test": evaluate this (completed) trial's final model on the test set and
    # send the test_* metrics to /trials/{id}/test-evaluation/complete.
    kind: Literal["train", "evaluate_test"] = "train"
    report_interval_s: float = Field(
        default=0.0,
        description="how long the worker may hold back per-epoch reports to send them "
        "together (in a report's `earlier`, or in the completion's `steps`); 0: send each at "
        "once (the study's pruner judges every step)",
    )
    schedule: list[dict[str, Any]] | None = Field(
        default=None,
        description="a replay of a PBT schedule (POST /trials/{id}/replay): train epochs "
        "`first_epoch` on with each entry's `params`, resuming from the trial's own checkpoint "
        "between entries; null: train with `params`",
    )

    @classmethod
    def of(cls, c: Claim, report_interval_s: float) -> ClaimedTrial:
        """What a worker is told of the trial, or the final test evaluation, it was given;
        ``report_interval_s``: the server's, for a trial whose steps no pruner judges."""
        quick = c.kind == "train" and not c.judges_each_step
        shared = {name: getattr(c, name) for name in cls.model_fields if hasattr(c, name)}
        return cls(id=c.trial_id, **shared, report_interval_s=report_interval_s if quick else 0.0)


class PassedOver(BaseModel):
    study_id: int
    entry_point: str | None = Field(default=None, description="the entry point to --allow")
    command: list[str] | None = Field(
        default=None, description="the study's command, for which to --allow-command a prefix"
    )
    needs: str = ""
    """What the worker would need, finishing "a worker with …": ``--allow X``, ``device
    cpu``, ``1 GPU (device cuda)``, ``label site=lab2``."""


class ClaimOut(BaseModel):
    trial: ClaimedTrial | None
    # False once no study this worker serves can produce another trial: time to exit.
    open_studies: bool
    passed_over: list[PassedOver] = Field(
        default_factory=list,
        description="with no trial: the running studies the worker is never given trials "
        "of (user code it does not allow, a device, GPUs or labels it lacks)",
    )
    waiting: list[str] = Field(
        default_factory=list,
        description="with no trial: what the worker waits for, in words ('study 18 is paused')",
    )

    @classmethod
    def of(cls, c: Claimed, report_interval_s: float) -> ClaimOut:
        if c.job is not None:
            return cls(trial=ClaimedTrial.of(c.job, report_interval_s), open_studies=True)
        passed = [
            PassedOver(study_id=sid, needs=needs, entry_point=entry_point, command=command)
            for sid, needs, entry_point, command in c.passed_over
        ]
        return cls(trial=None, open_studies=c.open_studies, passed_over=passed, waiting=c.waiting)


class LeaseIn(_Body):
    worker_id: str = Field(min_length=1, max_length=200)
    attempt: Attempt

    def holder(self, trial_id: int) -> Holder:
        """The lease this body acts on, of the trial named in the path."""
        return Holder(trial_id, self.worker_id, self.attempt)


class StepIn(_Body):
    step: int = Field(ge=0, le=10_000_000)
    metrics: ReportedMetrics = Field(max_length=1000)


class ReportIn(LeaseIn, StepIn):
    earlier: list[StepIn] = Field(
        default_factory=list,
        max_length=10_000,
        description="steps held back since the last report (oldest first), stored and judged "
        "before this one",
    )


class CompleteIn(LeaseIn):
    metrics: ReportedMetrics = Field(max_length=1000)
    pruned: bool = False
    steps: list[StepIn] = Field(
        default_factory=list,
        max_length=10_000,
        description="steps not reported yet (held back by the report interval), stored first",
    )
    claim_next: NextClaimIn | None = Field(
        default=None,
        description="claim the worker's next trial in the same request (the reply's `next`); "
        "the completion is committed first whatever the claim finds",
    )
    started: Id | None = Field(
        default=None,
        description="a trial the worker held ahead (a claim with `ahead`) and started as this "
        "one ended: its start is recorded as now rather than its claim",
    )


class FailIn(LeaseIn):
    # Bounded so that any such body fits the request limit, whatever its characters.
    error: str = Field(max_length=MAX_ERROR_CHARS)


class LogAppendIn(LeaseIn):
    offset: int = Field(ge=0, le=2**62, description="where `text` starts in the attempt's output")
    # Bounded so that any such body fits the request limit, whatever its characters.
    text: str = Field(max_length=MAX_LOG_PIECE_CHARS)


class LogAppendOut(BaseModel):
    next_offset: int


class LogOut(BaseModel):
    trial_id: int
    state: str = Field(description="the trial's state: a follower stops once it has ended")
    attempt: int | None = Field(description="the attempt read; null: no log yet")
    attempts: list[int] = Field(description="every attempt with a log")
    offset: int = Field(description="where `text` starts in the attempt's output (bytes)")
    next_offset: int = Field(description="the offset to ask for next, to follow the log")
    truncated: bool = Field(
        description="part of what was asked for was dropped (the last MiB of each attempt is kept)"
    )
    text: str


class ReleaseIn(LeaseIn):
    reason: str = Field(default="worker shutting down", max_length=1000)


class ForkIn(_Body):
    params: ParamValues = Field(
        description="hyperparameters to change; the others are the parent's", max_length=200
    )


class EvaluateTestIn(_Body):
    trial_id: Id | None = Field(default=None, description="default: the best feasible trial")


class FinalMetricsIn(LeaseIn):
    metrics: ReportedMetrics = Field(max_length=1000)


class CheckpointOut(BaseModel):
    trial_id: int
    step: int
    attempt: int
    bytes: int
    saved_at: UtcDateTime


class EndedOut(TrialOut):
    """A trial as its worker ended it (failed or completed), and whether that worker is now
    unhealthy: it then stops claiming."""

    worker_unhealthy: str | None = Field(
        default=None,
        description="why the worker is unhealthy (its last trials all failed, of studies "
        "whose trials do complete): it should claim no more",
    )


class CompleteOut(EndedOut):
    next: ClaimOut | None = Field(
        default=None, description="the next claim, when the completion asked for one"
    )


class AckOut(BaseModel):
    should_stop: bool
    reason: str | None
    lease_expires_at: UtcDateTime


class HistoryTrialIn(_Body):
    params: ParamValues
    metrics: ReportedMetrics = Field(default_factory=dict, max_length=1000)
    state: Literal["completed", "pruned"] = "completed"


class HistoryIn(_Body):
    """Ended trials from elsewhere (an Optuna study, an earlier search), added as history."""

    trials: list[HistoryTrialIn] = Field(min_length=1, max_length=5000)


class ImportedOut(BaseModel):
    imported: int
