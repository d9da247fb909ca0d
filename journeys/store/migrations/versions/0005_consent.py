"""sms consent

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_consent",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("keyword", sa.String(length=16), nullable=False),
        sa.Column("updated_at", journeys.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "phone", name=op.f("pk_sms_consent")),
    )


def downgrade() -> None:
    op.drop_table("sms_consent")
