"""An org's configured provider for a channel, and its credentials (stored sealed, opened here)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from journeys.keys.box import SecretBox, SecretKeyMissing
from journeys.store import channels as repo
from journeys.store.db import read_only

log = logging.getLogger("journeys.channels")


@dataclass(frozen=True)
class OrgChannel:
    org_id: str
    channel: str
    provider: str
    sealed: str  # the configuration, encrypted (a new seal differs every time)


def org_channel(conn: Connection, org_id: str, channel: str) -> OrgChannel | None:
    """The org's provider for `channel`, or None when it has none."""
    for row in repo.list_channels(conn, org_id):
        if row["channel"] == channel:
            return OrgChannel(org_id, channel, row["provider"], row["config_encrypted"])
    return None


def twilio_config(engine: Engine, box: SecretBox, org_id: str) -> dict[str, Any] | None:
    """The org's Twilio sms configuration, decrypted; None when it has none, or when it cannot
    be read (no or another JOURNEYS_SECRET_KEY: logged)."""
    with read_only(engine) as conn:
        found = org_channel(conn, org_id, "sms")
    if found is None or found.provider != "twilio":
        return None
    try:
        return box.open(found.sealed)
    except SecretKeyMissing as exc:
        log.warning("the Twilio credentials of org %s cannot be read: %s", org_id, exc)
        return None
