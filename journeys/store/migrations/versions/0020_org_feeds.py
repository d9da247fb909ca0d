"""org feeds: the FHIR feeds an org's Appointment endpoints apply (their mapping files, checked
and bound to a journey when stored)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "org_feeds",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("journey_id", sa.String(36), nullable=False),
        sa.Column("mapping", sa.Text, nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("org_feeds")
