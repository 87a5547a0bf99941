"""One SQLAlchemy model per table; constraints and indexes declared next to the columns.

Times are naive UTC (``DateTime()`` without zone) so SQLite and PostgreSQL compare them alike.
The schema itself is created only by the Alembic migrations in ``migrations/``; these models
must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hpsearch.states import StudyState, TrialState

# Violations can be infinite (an unmeasured satisficing metric); SQL floats and JSON cannot
# all hold that, so it is stored as the largest finite double.
STORED_INFINITY = 1.7976931348623157e308


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RUNNING)
    # Trial numbers are handed out from here inside the claim transaction, which also
    # serializes sampling per study (the row is locked by the update).
    next_number: Mapped[int] = mapped_column(Integer, default=0)
    # The spec's budget.max_trials plus trials added by hand (studies.add_to_budget): the one
    # budget figure that changes, kept here so that claims never parse the spec.
    max_trials: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_pruned: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    best_trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    updated_at: Mapped[datetime] = mapped_column(DateTime())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)

    trials: Mapped[list[Trial]] = relationship(back_populates="study", cascade="all, delete")

    __table_args__ = (Index("ix_studies_state", "state"),)


class Trial(Base):
    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=TrialState.QUEUED)
    source: Mapped[str] = mapped_column(String(16), default="sampler")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    feasible: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    violation: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A fork ("Panda" mode) starts from this trial's checkpoint, with some params changed.
    parent_trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A replay of a PBT schedule: [{"first_epoch", "params"}, ...], oldest first; the worker
    # trains each stretch with its params (see hpsearch.pbt.replay_segments). None: params.
    schedule: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # The epoch the trial's checkpoint (in the artifact store) ends; None: it has none.
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set once, by the study's final test evaluation; never read by ranking or sampling.
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)

    study: Mapped[Study] = relationship(back_populates="trials")
    intermediates: Mapped[list[TrialIntermediate]] = relationship(
        back_populates="trial", cascade="all, delete", order_by="TrialIntermediate.step"
    )
    events: Mapped[list[TrialEvent]] = relationship(
        back_populates="trial", cascade="all, delete", order_by="TrialEvent.id"
    )

    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        # The claim path: queued trials of a study, oldest first; expired leases.
        Index("ix_trials_study_state_number", "study_id", "state", "number"),
        Index("ix_trials_state_lease", "state", "lease_expires_at"),
        # The rank page: completed feasible trials of a study in order of value.
        Index("ix_trials_study_rank", "study_id", "state", "feasible", "value", "number"),
    )


class TrialIntermediate(Base):
    """One reported step (epoch) of a trial: every metric the worker sent for it."""

    __tablename__ = "trial_intermediates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime())

    trial: Mapped[Trial] = relationship(back_populates="intermediates")

    __table_args__ = (UniqueConstraint("trial_id", "step", name="uq_intermediates_trial_step"),)


class TrialEvent(Base):
    """The state history of a trial: claims, lease losses, retries, failures."""

    __tablename__ = "trial_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())

    trial: Mapped[Trial] = relationship(back_populates="events")

    __table_args__ = (Index("ix_trial_events_trial", "trial_id"),)


class FinalEvaluation(Base):
    """The one trial of a study whose model is evaluated on the test set, as a job a worker
    leases like a trial (see ``store/evaluations.py``)."""

    __tablename__ = "final_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=TrialState.QUEUED)
    source: Mapped[str] = mapped_column(String(16), default="user")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("study_id", name="uq_final_evaluations_study"),
        Index("ix_final_evaluations_state_lease", "state", "lease_expires_at"),
    )


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    devices: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Its ``--label key=value`` pairs, matched against a study's ``requires.labels``.
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    # Why it is unhealthy (its last trials all failed, of studies that succeed elsewhere);
    # None while healthy. Set once: a restarted worker has a new id.
    unhealthy: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime())
    # When it said it was leaving; None while it works. A claim under its id clears it.
    exited_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)


class ApiToken(Base):
    """An API token: only its SHA-256 digest is stored (see hpsearch.auth)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)
    # A worker token's worker ids: one id or a prefix ending in ``*``; NULL: any.
    workers: Mapped[str | None] = mapped_column(String(200), nullable=True)


# The artifact store kept in the database (hpsearch/store/artifacts.py), for servers that share
# nothing but it. Unused with the folder backend (the default).


class ArtifactBlob(Base):
    """The bytes of one checkpoint upload, in ``artifact_chunks``; shared by the checkpoints of
    a trial and of its forks (it never changes once written), removed with the last of them.
    Until published, an upload in progress (or abandoned, and removed later)."""

    __tablename__ = "artifact_blobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trial_id: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime())

    __table_args__ = (Index("ix_artifact_blobs_trial", "trial_id"),)


class ArtifactChunk(Base):
    __tablename__ = "artifact_chunks"

    blob_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("artifact_blobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoredCheckpoint(Base):
    """A trial's published checkpoint: (attempt, step) and the blob holding it. No foreign
    key to the trial: like the folder's files, rows under a deleted trial's id are cleared
    by the next trial given that id (its first checkpoint is ``fresh``)."""

    __tablename__ = "stored_checkpoints"

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(32), ForeignKey("artifact_blobs.id"))
    saved_at: Mapped[datetime] = mapped_column(DateTime())

    __table_args__ = (Index("ix_stored_checkpoints_blob", "blob_id"),)


class StoredLog(Base):
    """What one attempt of a trial printed: the bytes kept, and how many were dropped
    before them (as the folder's ``attempt-N.log`` and ``attempt-N.start``)."""

    __tablename__ = "stored_logs"

    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PbtExploit(Base):
    """One exploit of population-based training (hpsearch/pbt.py): trial ``trial_id`` was
    queued to go on from trial ``parent_trial_id``'s checkpoint at epoch ``step``, with
    perturbed hyperparameters, in place of trial ``replaced_trial_id``, which stopped there.
    The rows of a study are its lineage tree; a trial's chain of parents, its schedule."""

    __tablename__ = "pbt_exploits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    parent_trial_id: Mapped[int] = mapped_column(Integer)
    replaced_trial_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime())

    __table_args__ = (
        UniqueConstraint("trial_id", name="uq_pbt_exploits_trial"),
        Index("ix_pbt_exploits_study", "study_id"),
    )
