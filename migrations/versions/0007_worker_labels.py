"""Worker labels: the ``--label key=value`` pairs a worker claims with, kept so that a study
whose ``requires`` no live worker meets can say so ("waiting for a worker with …").

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("labels")
