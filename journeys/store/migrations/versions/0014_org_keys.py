"""each org's data keys, wrapped by a key-encryption key that is never stored (envelope
encryption of patient data, journeys.keys)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 00:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "org_keys",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("org_keys")
