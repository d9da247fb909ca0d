"""consent changes record their source and reason (staff can opt numbers out and back in);
inbound messages record their kind (a reply, or a consent keyword that was handled)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The consent keywords as journeys.messaging.consent classifies them (frozen here: a migration
# must not change when the code does).
_KINDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), "opt_out"),
    **dict.fromkeys(("START", "UNSTOP"), "opt_in"),
    "HELP": "help",
}


def upgrade() -> None:
    with op.batch_alter_table("sms_consent") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="sms"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.alter_column("keyword", existing_type=sa.String(length=16), nullable=True)
    op.add_column(
        "inbound_messages", sa.Column("kind", sa.String(length=16), nullable=False, server_default="reply")
    )
    # Messages already stored: a keyword is short, unmatched, and the whole (trimmed) message.
    im = sa.table("inbound_messages", sa.column("org_id"), sa.column("message_id"), sa.column("body"),
                  sa.column("instance_id"), sa.column("kind"))  # fmt: skip
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(im.c.org_id, im.c.message_id, im.c.body).where(
            im.c.instance_id.is_(None), sa.func.length(im.c.body) <= 40
        )
    ).all()
    updates = [
        {"o": org_id, "m": message_id, "k": _KINDS[body.strip().upper()]}
        for org_id, message_id, body in rows
        if body.strip().upper() in _KINDS
    ]
    if updates:
        conn.execute(
            im.update()
            .where(im.c.org_id == sa.bindparam("o"), im.c.message_id == sa.bindparam("m"))
            .values(kind=sa.bindparam("k")),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("kind")
    op.execute("UPDATE sms_consent SET keyword = upper(source) WHERE keyword IS NULL")
    with op.batch_alter_table("sms_consent") as batch:
        batch.alter_column("keyword", existing_type=sa.String(length=16), nullable=False)
        batch.drop_column("reason")
        batch.drop_column("source")
