"""Webhook changes an admin makes in the console, audited: retrying a failed delivery (due at
once: the worker sends it on its next round; failing again, it is given up again), and the
audit entries of creating and deleting a subscription (journeys.webhooks.service makes those,
challenging the endpoint outside any transaction)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor
from journeys.errors import NotFound
from journeys.store import webhooks as repo


def retry(conn: Connection, org_id: str, actor: Actor, delivery_id: str) -> None:
    """Make one of the org's failed deliveries due again (its subscription must still exist)."""
    if len(delivery_id) > 64 or not repo.retry_delivery(conn, org_id, delivery_id, actor.at):
        raise NotFound(f"no failed delivery {delivery_id} of a current webhook in this organisation")
    audit.record(conn, actor.entry(org_id, Action.WEBHOOK_RETRY, "delivery", (delivery_id,)))


def record(conn: Connection, org_id: str, actor: Actor, action: Action, subscription_id: str) -> None:
    audit.record(conn, actor.entry(org_id, action, "webhook", (subscription_id,)))
