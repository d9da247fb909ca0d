"""registered APIs: a clinic system an org's `http_request` steps call by name, its base URL,
how to authenticate, and the credentials (sealed like provider credentials)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "org_apis",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("base_url", sa.Text, nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("config_encrypted", sa.Text, nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("org_apis")
