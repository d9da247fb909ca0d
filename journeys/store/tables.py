"""SQLAlchemy Core tables.

Every table of tenant data carries `org_id` and leads its primary key with it, so the schema can
later be distributed by org (Citus) without changing a key; `worker_heartbeats` (operational, one
row per worker process) has none and would be a reference table. docs/operations.md's Citus
section places every table (tests/test_schema.py checks it). Times are stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in Python; `timestamptz` on PostgreSQL, naive UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        # SQLite's DateTime stores the fields as text (naive UTC), without the offset.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Byte-wise ordering on both databases, so prefix searches are index range scans.
BinaryText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
Id = sa.String(36)

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("org_id", Id, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=True),  # null: JOURNEYS_RETENTION_DAYS (migration 0017)
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("token_id", Id, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "token_id"),
    sa.Index("ix_api_tokens_token_hash", "token_hash", unique=True),
)

journeys = sa.Table(
    "journeys",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),  # the API's chatBotId
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "journey_id"),
    sa.UniqueConstraint("org_id", "name"),
)

journey_versions = sa.Table(
    "journey_versions",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # validated definition, JSON
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "journey_id", "version"),
)

ACTIVE = "InProgress"
STATUSES = ("InProgress", "Completed", "Cancelled", "Failed")

journey_instances = sa.Table(
    "journey_instances",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("batch_id", Id, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),  # JSON object, canonical names -> strings
    sa.Column("identifier_key", sa.Text, nullable=True),
    # Execution cursor: the step to run next, and when.
    sa.Column("flow_id", sa.String(128), nullable=True),
    sa.Column("step_id", sa.Integer, nullable=True),
    sa.Column("due_at", UTCDateTime, nullable=True),
    sa.Column("state", sa.Text, nullable=False, server_default="{}"),  # JSON interpreter state
    sa.Column("rev", sa.Integer, nullable=False, server_default="0"),  # bumped by every change
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    # Denormalised lastStepExecuted, so search needs no join.
    sa.Column("last_event_at", UTCDateTime, nullable=True),
    sa.Column("last_flow_name", sa.Text, nullable=True),
    sa.Column("last_step_id", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("start_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    # Set while the instance waits for an SMS reply from this (normalised) number.
    sa.Column("waiting_reply_phone", sa.String(64), nullable=True),  # number, or its blind index
    # The claim token of the worker batch holding the instance; due_at is then the lease's expiry.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    # When its patient data was erased (retention or a patient's request): a tombstone since.
    sa.Column("purged_at", UTCDateTime, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "instance_id"),
    sa.Index("ix_journey_instances_org_journey_created", "org_id", "journey_id", "created_at"),
    sa.Index("ix_journey_instances_org_journey_status", "org_id", "journey_id", "status", "created_at"),
    # The console's counts: by version and status (the journeys page), and the active instances
    # at each step, listed by id (the journey page) — index-only, never a scan of the instances.
    sa.Index(
        "ix_journey_instances_console_counts",
        "org_id",
        "journey_id",
        "version",
        "status",
        "step_id",
        "instance_id",
    ),
    # One active instance per identifier (enforced by the database, not only by the API).
    sa.Index(
        "uq_journey_instances_active_identifier",
        "org_id",
        "journey_id",
        "identifier_key",
        unique=True,
        sqlite_where=sa.text("status = 'InProgress'"),
        postgresql_where=sa.text("status = 'InProgress'"),
    ),
    # Ended instances whose data the retention purge has still to erase (migration 0017).
    sa.Index(
        "ix_journey_instances_purgeable",
        "org_id",
        "journey_id",
        "ended_at",
        sqlite_where=sa.text("ended_at IS NOT NULL AND purged_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NOT NULL AND purged_at IS NULL"),
    ),
    sa.Index(
        "ix_journey_instances_waiting_reply",
        "org_id",
        "waiting_reply_phone",
        sqlite_where=sa.text("waiting_reply_phone IS NOT NULL"),
        postgresql_where=sa.text("waiting_reply_phone IS NOT NULL"),
    ),
    # Due work: only active instances with a due time are in this index.
    sa.Index(
        "ix_journey_instances_due",
        "due_at",
        sqlite_where=sa.text("status = 'InProgress' AND due_at IS NOT NULL"),
        postgresql_where=sa.text("status = 'InProgress' AND due_at IS NOT NULL"),
    ),
)

instance_parameters = sa.Table(
    "instance_parameters",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("name", sa.String(128), nullable=False),  # lower-cased parameter name
    sa.Column("value", BinaryText, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "instance_id", "name"),
    sa.Index("ix_instance_parameters_lookup", "org_id", "journey_id", "name", "value"),
)

instance_events = sa.Table(
    "instance_events",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("event_id", sa.String(32), nullable=False),  # time-ordered
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("flow_id", sa.String(128), nullable=True),
    sa.Column("flow_name", sa.Text, nullable=True),
    sa.Column("step_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),  # JSON, no PHI
    sa.PrimaryKeyConstraint("org_id", "instance_id", "event_id"),
    # Sends that wait (send window, frequency cap deferral): the messages listing shows them.
    sa.Index(
        "ix_instance_events_held",
        "at",
        sqlite_where=sa.text("kind IN ('send_held', 'sms_deferred')"),
        postgresql_where=sa.text("kind IN ('send_held', 'sms_deferred')"),
    ),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("message_id", Id, nullable=False),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("flow_id", sa.String(128), nullable=True),
    sa.Column("step_id", sa.Integer, nullable=True),
    sa.Column("channel", sa.String(16), nullable=False),
    # The recipient, or with patient data encrypted its blind index (journeys.keys.phi: caps and
    # opt-outs match by it) and the recipient sealed in `recipient` (migration 0016).
    sa.Column("to_address", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=True),
    # Sent under the frequency cap (transactional sends are neither limited nor counted).
    sa.Column("capped", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.String(16), nullable=False),  # queued | sent | dropped | failed
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("provider", sa.String(32), nullable=True),
    sa.Column("send_after", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # Delivery through a network provider: attempts so far, the provider's id and error code.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("provider_message_id", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(32), nullable=True),
    sa.Column("recipient", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "message_id"),
    sa.UniqueConstraint("org_id", "idempotency_key"),
    sa.Index("ix_outbox_org_instance", "org_id", "instance_id"),
    sa.Index("ix_outbox_org_provider_id", "org_id", "provider_message_id"),  # status callbacks
    sa.Index("ix_outbox_org_to_created", "org_id", "to_address", "created_at"),  # frequency caps
    # The console's messages listing, newest first (its status and journey filters read along it:
    # indexes for them too would cost every send; migration 0013).
    sa.Index("ix_outbox_org_created", "org_id", "created_at", "message_id"),
    sa.Index(
        "ix_outbox_queued",
        "send_after",
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    ),
    # Messages being sent through a provider: send_after is then the sending lease's expiry.
    sa.Index(
        "ix_outbox_sending",
        "send_after",
        sqlite_where=sa.text("status = 'sending'"),
        postgresql_where=sa.text("status = 'sending'"),
    ),
)

# A provider's final delivery status that arrived before the send recorded the provider's message
# id (Twilio may call back before its API answer is committed); applied once it is, or pruned.
early_delivery_statuses = sa.Table(
    "early_delivery_statuses",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("provider_message_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(32), nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "provider_message_id"),
)

inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("message_id", Id, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("from_address", sa.String(128), nullable=False),  # the number, sealed when encrypted
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("instance_id", Id, nullable=True),  # the instance it answered; null: unmatched
    sa.Column("source", sa.String(16), nullable=False),  # api | cli | provider
    # reply, or the consent keyword it was (opt_out | opt_in | help): handled, needs no human.
    sa.Column("kind", sa.String(16), nullable=False, server_default="reply"),
    # The provider's id (Twilio's MessageSid): a retried webhook is recognised, not taken twice.
    sa.Column("provider_message_id", sa.String(64), nullable=True),
    # An unmatched reply a staff member has dealt with (the console's replies inbox): when, by whom.
    sa.Column("handled_at", UTCDateTime, nullable=True),
    sa.Column("handled_by", Id, nullable=True),  # the user's id
    sa.PrimaryKeyConstraint("org_id", "message_id"),
    sa.Index("ix_inbound_messages_org_received", "org_id", "received_at"),
    # The replies inbox: unmatched replies only.
    sa.Index(
        "ix_inbound_messages_unmatched",
        "org_id",
        "received_at",
        "message_id",
        sqlite_where=sa.text("instance_id IS NULL AND kind = 'reply'"),
        postgresql_where=sa.text("instance_id IS NULL AND kind = 'reply'"),
    ),
    # The inbox as it opens: the unmatched replies nobody has handled yet.
    sa.Index(
        "ix_inbound_messages_unhandled",
        "org_id",
        "received_at",
        "message_id",
        sqlite_where=sa.text("instance_id IS NULL AND kind = 'reply' AND handled_at IS NULL"),
        postgresql_where=sa.text("instance_id IS NULL AND kind = 'reply' AND handled_at IS NULL"),
    ),
    sa.Index("uq_inbound_messages_provider_message", "org_id", "provider_message_id", unique=True),
)

# A channel's provider for an org (e.g. sms -> twilio); its configuration is encrypted at rest.
org_channels = sa.Table(
    "org_channels",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),  # sms | email
    sa.Column("provider", sa.String(32), nullable=False),  # twilio | smtp
    sa.Column("config_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "channel"),
)

# Operational, not tenant data: one row per worker process (a Citus reference table).
worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("stopped_at", UTCDateTime, nullable=True),
    sa.Column("batches", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("steps", sa.BigInteger, nullable=False, server_default="0"),
)

# SMS consent per org and number (STOP / START keywords, or staff through the API or CLI): no SMS
# goes to an opted-out number. One row per number: its latest change, who made it and when.
sms_consent = sa.Table(
    "sms_consent",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    # normalised: "+<digits>"; with patient data encrypted its blind index, and the number
    # sealed in `number` (migration 0016)
    sa.Column("phone", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # opted_out | opted_in
    sa.Column("keyword", sa.String(16), nullable=True),  # the keyword that set it, e.g. STOP; null: staff
    sa.Column("source", sa.String(16), nullable=False, server_default="sms"),  # sms | api | cli
    sa.Column("reason", sa.Text, nullable=True),  # staff's note (may be PHI: never logged)
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("number", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "phone"),
    sa.Index("ix_sms_consent_org_status_updated", "org_id", "status", "updated_at", "phone"),  # paged lists
)

# Event webhooks to an org's own systems: subscriptions (secret encrypted like provider
# credentials) and one delivery row per event and subscription (attempts, status codes).
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("subscription_id", Id, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret_encrypted", sa.Text, nullable=False),
    sa.Column("event_types", sa.Text, nullable=False),  # space-separated; "*" for all
    sa.Column("verified_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "subscription_id"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("delivery_id", sa.String(32), nullable=False),  # time-ordered
    sa.Column("subscription_id", Id, nullable=False),
    sa.Column("instance_id", Id, nullable=False),
    sa.Column("event_type", sa.String(48), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON, no PHI
    sa.Column("status", sa.String(16), nullable=False),  # pending | sending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "delivery_id"),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        sqlite_where=sa.text("status IN ('pending', 'sending')"),
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    ),
    sa.Index(
        "ix_webhook_deliveries_order",
        "org_id",
        "subscription_id",
        "instance_id",
        "delivery_id",
    ),
)

# Use this literal (not a bound parameter) in queries that must match the partial indexes'
# `status = 'InProgress'` predicate: SQLite only uses a partial index when it can prove it.
ACTIVE_LITERAL: sa.ColumnClause[str] = sa.literal_column("'InProgress'")

# Staff users of an org (the console's accounts): argon2 password hashes, an optional TOTP secret
# (sealed like provider credentials), failed-login counting for lockout. Emails are unique per org
# whatever their case (email_key is the lower-cased address).
users = sa.Table(
    "users",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("email_key", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # viewer | operator | designer | admin
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("totp_secret_encrypted", sa.Text, nullable=True),
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),  # a code is taken once
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_failed_at", UTCDateTime, nullable=True),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("last_login_at", UTCDateTime, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "user_id"),
    sa.Index("uq_users_email", "org_id", "email_key", unique=True),
)

# An org's security settings (a row only once one is changed).
org_settings = sa.Table(
    "org_settings",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("require_totp", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id"),
)

# Staff sessions: the random token is stored only as its SHA-256; idle and absolute expiry.
user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("idle_seconds", sa.Integer, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),  # the absolute timeout
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("client_address", sa.String(64), nullable=True),
    sa.PrimaryKeyConstraint("org_id", "session_id"),
    sa.Index("uq_user_sessions_token", "org_id", "token_hash", unique=True),
    sa.Index("ix_user_sessions_user", "org_id", "user_id"),
)

# The audit log: append-only, one hash chain per org (each entry's hash covers the previous
# one's). audit_heads holds each chain's last seq and hash: writers lock its row, so two cannot
# fork the chain. Ids and counts only, never parameter values.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),  # user | token | cli | feed
    sa.Column("actor_id", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_kind", sa.String(32), nullable=True),
    sa.Column("target_ids", sa.Text, nullable=False, server_default="[]"),  # JSON array of ids
    sa.Column("count", sa.BigInteger, nullable=True),
    sa.Column("client_address", sa.String(64), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("org_id", "seq"),
    sa.Index("ix_audit_log_org_at", "org_id", "at"),
)

audit_heads = sa.Table(
    "audit_heads",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("org_id"),
)

# Registered APIs (migration 0018): a clinic system `http_request` steps call by name (`api: ehr`),
# its base URL and how to authenticate; the credentials sealed like provider credentials.
org_apis = sa.Table(
    "org_apis",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),
    sa.Column("auth", sa.String(16), nullable=False),  # none | api_key | basic | bearer | oauth2
    sa.Column("config_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "name"),
)

# Each HL7 message a feed applied, by its sender (MSH-3^MSH-4) and control id (MSH-10), with the
# acknowledgement it got: a redelivery is acknowledged the same way and applied once
# (journeys.feeds). No patient data: ids, the event and the acknowledgement's text only.
feed_messages = sa.Table(
    "feed_messages",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("feed", sa.String(64), nullable=False),
    sa.Column("sender", sa.String(255), nullable=False),
    sa.Column("control_id", sa.String(200), nullable=False),
    sa.Column("event", sa.String(8), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("ack_code", sa.String(2), nullable=False),
    sa.Column("ack_text", sa.Text, nullable=False),
    sa.Column("instance_id", Id, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "feed", "sender", "control_id"),
    sa.Index("ix_feed_messages_received", "org_id", "received_at"),
)

# The feeds an org's FHIR endpoints apply: each a mapping file (journeys.feeds.mapping), stored
# as written once it is checked and bound to the org's journey (journeys.feeds.registry).
org_feeds = sa.Table(
    "org_feeds",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # fhir
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("mapping", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "name"),
)

# Each org's data keys, wrapped by a key-encryption key that is never stored (journeys.keys).
org_keys = sa.Table(
    "org_keys",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kek_id", sa.String(32), nullable=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "version"),
)

# How many instances passed each step (ran it and went on), by the hour: the worker adds to it in
# the transaction that writes the steps' events, so the journey page reads a few hundred rows
# instead of counting events. Each worker adds to its own shard (no lock waits between workers).
step_passes = sa.Table(
    "step_passes",
    metadata,
    sa.Column("org_id", Id, nullable=False),
    sa.Column("journey_id", Id, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("hour", UTCDateTime, nullable=False),  # the hour's start
    sa.Column("step_id", sa.Integer, nullable=False),
    sa.Column("shard", sa.SmallInteger, nullable=False),
    sa.Column("passes", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("org_id", "journey_id", "version", "hour", "step_id", "shard"),
)
