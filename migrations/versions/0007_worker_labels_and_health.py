"""Worker labels and health: the ``--label key=value`` pairs a worker claims with, kept so that
a study whose ``requires`` no live worker meets can say so ("waiting for a worker with …"); and
why a worker is unhealthy (its last trials all failed), shown on the workers page.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("unhealthy", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("unhealthy")
        batch.drop_column("labels")
