"""The study's trial budget as a column, so the queue's hot statements never parse the spec.

``max_trials`` is the one budget figure that changes after submission (an enqueued guess, a
fork or imported history each add to it); everything else in the spec is fixed and read from a
per-process cache of the parsed spec.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("max_trials", sa.Integer(), nullable=False, server_default="0"))
    studies = sa.table("studies", sa.column("id", sa.Integer), sa.column("spec", sa.JSON))
    bind = op.get_bind()
    for study_id, spec in bind.execute(sa.select(studies.c.id, studies.c.spec)).all():
        if isinstance(spec, str):
            spec = json.loads(spec)
        bind.execute(
            sa.text("UPDATE studies SET max_trials = :n WHERE id = :id"),
            {"n": int(spec.get("budget", {}).get("max_trials", 0)), "id": study_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("max_trials")
