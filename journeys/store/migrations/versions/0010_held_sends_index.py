"""held sends: a partial index on the timeline's `send_held` / `sms_deferred` events, so the
messages listing can show sends that wait (send window, frequency cap) without scanning events

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HELD = "kind IN ('send_held', 'sms_deferred')"


def upgrade() -> None:
    op.create_index(
        "ix_instance_events_held",
        "instance_events",
        ["at"],
        sqlite_where=sa.text(_HELD),
        postgresql_where=sa.text(_HELD),
    )


def downgrade() -> None:
    op.drop_index("ix_instance_events_held", table_name="instance_events")
