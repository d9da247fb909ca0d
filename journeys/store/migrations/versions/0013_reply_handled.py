"""the console's messages, replies inbox and opt-outs: who handled an unmatched reply and when,
and indexes leading with org_id for their paged listings (messages by time, status and journey;
unmatched replies; opted-out numbers)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime
_UNMATCHED = "instance_id IS NULL AND kind = 'reply'"
_UNHANDLED = _UNMATCHED + " AND handled_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("handled_at", UTC, nullable=True))
        batch.add_column(sa.Column("handled_by", sa.String(length=36), nullable=True))
    op.create_index(
        "ix_inbound_messages_unmatched",
        "inbound_messages",
        ["org_id", "received_at", "message_id"],
        sqlite_where=sa.text(_UNMATCHED),
        postgresql_where=sa.text(_UNMATCHED),
    )
    op.create_index(
        "ix_inbound_messages_unhandled",
        "inbound_messages",
        ["org_id", "received_at", "message_id"],
        sqlite_where=sa.text(_UNHANDLED),
        postgresql_where=sa.text(_UNHANDLED),
    )
    # One index for the messages listing (newest first); status and journey filters read along it.
    # Indexes by status and by journey as well halved the engine's send rate (every message is
    # inserted, and its status changes, with them): bench/README.md.
    op.create_index("ix_outbox_org_created", "outbox", ["org_id", "created_at", "message_id"])
    op.create_index(
        "ix_sms_consent_org_status_updated", "sms_consent", ["org_id", "status", "updated_at", "phone"]
    )


def downgrade() -> None:
    op.drop_index("ix_sms_consent_org_status_updated", table_name="sms_consent")
    op.drop_index("ix_outbox_org_created", table_name="outbox")
    op.drop_index("ix_inbound_messages_unhandled", table_name="inbound_messages")
    op.drop_index("ix_inbound_messages_unmatched", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("handled_by")
        batch.drop_column("handled_at")
