"""An org's delivery providers as admins see and change them: set (checked, sealed with
JOURNEYS_SECRET_KEY) and remove, each audited (CHANNEL_SET / CHANNEL_REMOVE) in the caller's
transaction; listed with their non-secret settings only (never a secret, not even masked)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor
from journeys.errors import NotFound
from journeys.keys.box import SecretBox, SecretKeyMissing
from journeys.messaging.providers import registry
from journeys.store import accounts as accounts_repo
from journeys.store import channels as repo

# What may be shown of each provider's configuration; everything else (tokens, passwords) never.
SHOWN: dict[str, tuple[str, ...]] = {
    "twilio": ("account_sid", "from", "messaging_service_sid"),
    "smtp": ("host", "port", "security", "username", "from_address", "from_name"),
}
CHANNELS = ("sms", "email")


@dataclass(frozen=True)
class ConfiguredChannel:
    channel: str
    provider: str
    settings: tuple[tuple[str, str], ...]  # the non-secret ones, (key, value)
    readable: bool  # False when the server's key cannot open the configuration
    updated_at: datetime | None


def _shown(provider: str, config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, str(config[k])) for k in SHOWN.get(provider, ()) if config.get(k) not in (None, ""))


def list_configured(conn: Connection, org_id: str, box: SecretBox) -> list[ConfiguredChannel]:
    found = []
    for row in repo.list_channels(conn, org_id):
        try:
            settings, readable = _shown(row["provider"], box.open(row["config_encrypted"])), True
        except SecretKeyMissing:
            settings, readable = (), False
        found.append(
            ConfiguredChannel(row["channel"], row["provider"], settings, readable, row.get("updated_at"))
        )
    return found


def set_channel(
    conn: Connection,
    org_id: str,
    actor: Actor,
    provider: str,
    config: dict[str, Any],
    box: SecretBox,
    channel: str | None = None,
) -> str:
    """Check the provider's configuration, seal and store it for `channel` (by default the one
    the provider serves); returns the channel. Empty values count as not given (the provider's
    defaults apply)."""
    if provider not in registry.PROVIDERS:
        raise registry.ProviderConfigError(
            f"unknown provider {provider!r} (known: {', '.join(registry.PROVIDERS)})"
        )
    channel = channel or registry.PROVIDERS[provider][1][0]
    given = {k: v for k, v in config.items() if not (isinstance(v, str) and not v.strip())}
    checked = registry.check_config(provider, channel, given)
    sealed = box.seal(checked)
    if accounts_repo.get_org(conn, org_id) is None:
        raise NotFound(f"unknown org {org_id}")
    repo.set_channel(conn, org_id, channel, provider, sealed, actor.at)
    audit.record(conn, actor.entry(org_id, Action.CHANNEL_SET, "channel", (channel,)))
    return channel


def remove_channel(conn: Connection, org_id: str, actor: Actor, channel: str) -> None:
    """Remove the org's provider for `channel` (its messages go back to the built-in outbox)."""
    if channel not in CHANNELS or not repo.remove_channel(conn, org_id, channel):
        raise NotFound(f"this organisation has no provider for {channel}")
    audit.record(conn, actor.entry(org_id, Action.CHANNEL_REMOVE, "channel", (channel,)))
