"""An index for the rank page: a study's completed feasible trials in order of value.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_trials_study_rank", "trials", ["study_id", "state", "feasible", "value", "number"]
    )


def downgrade() -> None:
    op.drop_index("ix_trials_study_rank", table_name="trials")
