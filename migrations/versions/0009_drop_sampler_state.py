"""Drop ``studies.sampler_state``: always ``{}``. A study's sampler is rebuilt from its spec
and its ended trials in each server process (hpsearch/store/rules.py), never stored.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("sampler_state")


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(
            sa.Column("sampler_state", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
