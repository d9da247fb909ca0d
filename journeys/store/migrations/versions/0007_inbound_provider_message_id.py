"""inbound messages: the provider's message id, unique per org (Twilio retries a webhook it did
not see answered; the retry must not be taken for a second reply)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("provider_message_id", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_inbound_messages_provider_message",
        "inbound_messages",
        ["org_id", "provider_message_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_inbound_messages_provider_message", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("provider_message_id")
