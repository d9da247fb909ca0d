"""with patient data encrypted, an outbox message's recipient and an opted-out number are kept
sealed (`outbox.recipient`, `sms_consent.number`), and the columns messages and numbers are
matched by (`outbox.to_address`, `sms_consent.phone`) hold their blind indexes instead; null for
rows written without encryption, whose matching column is the value itself

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("recipient", sa.Text, nullable=True))
    op.add_column("sms_consent", sa.Column("number", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_consent") as batch:
        batch.drop_column("number")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("recipient")
