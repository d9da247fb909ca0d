"""early delivery statuses: a provider's final status that arrives before the send has recorded
the provider's message id (Twilio can call back before its API answer is committed)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "early_delivery_statuses",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("received_at", journeys.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "provider_message_id", name=op.f("pk_early_delivery_statuses")),
    )


def downgrade() -> None:
    op.drop_table("early_delivery_statuses")
