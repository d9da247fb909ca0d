"""feed messages: each HL7 message a feed applied (by sender and control id), and the
acknowledgement it got, so that a redelivered message is acknowledged the same way and applied
once

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "feed_messages",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("feed", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("control_id", sa.String(200), nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("received_at", UTC(timezone=True), nullable=False),
        sa.Column("ack_code", sa.String(2), nullable=False),
        sa.Column("ack_text", sa.Text, nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "feed", "sender", "control_id"),
    )
    op.create_index("ix_feed_messages_received", "feed_messages", ["org_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_feed_messages_received", table_name="feed_messages")
    op.drop_table("feed_messages")
