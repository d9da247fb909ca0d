"""waiting_reply_phone holds the blind index of the number (22 characters) when patient data is
encrypted: widened to 64 (PostgreSQL only; SQLite does not enforce a VARCHAR's length, and
rebuilding journey_instances to change a declaration it ignores would cost a copy of the table)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # widening a varchar rewrites nothing there
        op.alter_column(
            "journey_instances", "waiting_reply_phone", type_=sa.String(64), existing_type=sa.String(20)
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "journey_instances", "waiting_reply_phone", type_=sa.String(20), existing_type=sa.String(64)
        )
