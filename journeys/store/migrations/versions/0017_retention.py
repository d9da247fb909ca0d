"""retention: an org's retention in days (`orgs.retention_days`; null: the deployment's default),
when an instance was reduced to a tombstone (`journey_instances.purged_at`), and the index the
purge finds ended instances by (org, journey, ended_at; only those not yet purged)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

PURGEABLE = "ended_at IS NOT NULL AND purged_at IS NULL"


def upgrade() -> None:
    op.add_column("orgs", sa.Column("retention_days", sa.Integer, nullable=True))
    op.add_column(
        "journey_instances",
        sa.Column("purged_at", journeys.store.tables.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_journey_instances_purgeable",
        "journey_instances",
        ["org_id", "journey_id", "ended_at"],
        sqlite_where=sa.text(PURGEABLE),
        postgresql_where=sa.text(PURGEABLE),
    )


def downgrade() -> None:
    op.drop_index("ix_journey_instances_purgeable", table_name="journey_instances")
    with op.batch_alter_table("journey_instances") as batch:
        batch.drop_column("purged_at")
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("retention_days")
