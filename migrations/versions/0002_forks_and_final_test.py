"""Checkpoints and forks of trials, test metrics on trials, the final test evaluation job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("trials", sa.Column("parent_trial_id", sa.Integer(), nullable=True))
    op.add_column("trials", sa.Column("checkpoint_step", sa.Integer(), nullable=True))
    op.add_column("trials", sa.Column("test_metrics", sa.JSON(), nullable=True))
    op.create_table(
        "final_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer(),
            sa.ForeignKey("studies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "trial_id",
            sa.Integer(),
            sa.ForeignKey("trials.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("study_id", name="uq_final_evaluations_study"),
    )
    op.create_index(
        "ix_final_evaluations_state_lease", "final_evaluations", ["state", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_final_evaluations_state_lease", table_name="final_evaluations")
    op.drop_table("final_evaluations")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("test_metrics")
        batch.drop_column("checkpoint_step")
        batch.drop_column("parent_trial_id")
