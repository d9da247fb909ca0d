"""staff users (argon2 passwords, optional TOTP, lockout), org security settings, sessions, and
the append-only audit log with its per-org hash chain heads

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import journeys.store.tables  # noqa: F401  (custom types referenced below)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC = journeys.store.tables.UTCDateTime
ID = sa.String(length=36)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("totp_secret_encrypted", sa.Text(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_failed_at", UTC(timezone=True), nullable=True),
        sa.Column("locked_until", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.Column("disabled_at", UTC(timezone=True), nullable=True),
        sa.Column("last_login_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "user_id", name=op.f("pk_users")),
    )
    op.create_index("uq_users_email", "users", ["org_id", "email_key"], unique=True)
    op.create_table(
        "org_settings",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("require_totp", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_settings")),
    )
    op.create_table(
        "user_sessions",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTC(timezone=True), nullable=False),
        sa.Column("idle_seconds", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTC(timezone=True), nullable=False),
        sa.Column("revoked_at", UTC(timezone=True), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "session_id", name=op.f("pk_user_sessions")),
    )
    op.create_index("uq_user_sessions_token", "user_sessions", ["org_id", "token_hash"], unique=True)
    op.create_index("ix_user_sessions_user", "user_sessions", ["org_id", "user_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", UTC(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=32), nullable=True),
        sa.Column("target_ids", sa.Text(), server_default="[]", nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "seq", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_org_at", "audit_log", ["org_id", "at"], unique=False)
    op.create_table(
        "audit_heads",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_audit_heads")),
    )


def downgrade() -> None:
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_log_org_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_user_sessions_user", table_name="user_sessions")
    op.drop_index("uq_user_sessions_token", table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_table("org_settings")
    op.drop_index("uq_users_email", table_name="users")
    op.drop_table("users")
