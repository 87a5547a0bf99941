"""The artifact store in the database: checkpoints (chunked blobs) and trial logs, for
servers on several hosts that share nothing but the database (HPSEARCH_ARTIFACT_BACKEND).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_blobs",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_artifact_blobs_trial", "artifact_blobs", ["trial_id"])
    op.create_table(
        "artifact_chunks",
        sa.Column(
            "blob_id",
            sa.String(length=32),
            sa.ForeignKey("artifact_blobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "stored_checkpoints",
        sa.Column("trial_id", sa.Integer(), primary_key=True),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("step", sa.Integer(), primary_key=True),
        sa.Column(
            "blob_id", sa.String(length=32), sa.ForeignKey("artifact_blobs.id"), nullable=False
        ),
        sa.Column("saved_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_stored_checkpoints_blob", "stored_checkpoints", ["blob_id"])
    op.create_table(
        "stored_logs",
        sa.Column("trial_id", sa.Integer(), primary_key=True),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stored_logs")
    op.drop_index("ix_stored_checkpoints_blob", table_name="stored_checkpoints")
    op.drop_table("stored_checkpoints")
    op.drop_table("artifact_chunks")
    op.drop_index("ix_artifact_blobs_trial", table_name="artifact_blobs")
    op.drop_table("artifact_blobs")
