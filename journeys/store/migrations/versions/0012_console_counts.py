"""the console's counts: an index of instances by journey, version, status and step (index-only
counts and step listings), and step_passes (instances that passed each step, by the hour)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime
ID = sa.String(length=36)


def upgrade() -> None:
    op.create_index(
        "ix_journey_instances_console_counts",
        "journey_instances",
        ["org_id", "journey_id", "version", "status", "step_id", "instance_id"],
        unique=False,
    )
    op.create_table(
        "step_passes",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("journey_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hour", UTC(timezone=True), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("passes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "journey_id", "version", "hour", "step_id", "shard", name=op.f("pk_step_passes")
        ),
    )


def downgrade() -> None:
    op.drop_table("step_passes")
    op.drop_index("ix_journey_instances_console_counts", table_name="journey_instances")
