"""with patient data encrypted, waiting_reply_phone holds the blind index of the number (22
characters) and inbound_messages.from_address the sealed number (up to 69): widened to 64 and 128
(PostgreSQL only; SQLite does not enforce a VARCHAR's length, and rebuilding the tables to change
a declaration it ignores would cost a copy of each)

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


WIDENED = (  # table, column, before, after
    ("journey_instances", "waiting_reply_phone", 20, 64),
    ("inbound_messages", "from_address", 32, 128),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # widening a varchar rewrites nothing there
        for table, column, before, after in WIDENED:
            op.alter_column(table, column, type_=sa.String(after), existing_type=sa.String(before))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, before, after in WIDENED:
            op.alter_column(table, column, type_=sa.String(before), existing_type=sa.String(after))
