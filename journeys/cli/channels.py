"""`journeys channel …` and `journeys webhook …`: delivery providers and event webhooks."""

from __future__ import annotations

from typing import Any

import typer

from journeys.accounts.audit import Action
from journeys.api.schemas import delivery_json, subscription_json
from journeys.cli.auditing import record_cli
from journeys.cli.common import (
    _engine,
    _fail,
    _now,
    _print_json,
    _settings,
    json_option,
    key_values,
    limit_option,
    new_app,
    org_filter_option,
    org_option,
)
from journeys.store.db import read_only, transaction

channel_app = new_app(
    "Delivery providers per org and channel.\n\nCredentials are stored encrypted (JOURNEYS_SECRET_KEY)."
)
webhook_app = new_app("Event webhooks to the org's own systems.")

_CHANNEL_HELP = "sms or email"
_WEBHOOK_ID_HELP = "The subscription's id (journeys webhook list)"


# ------------------------------------------------------------------ channels
@channel_app.command("set")
def channel_set(
    org: str = org_option(),
    channel: str = typer.Option(..., "--channel", metavar="CHANNEL", help=_CHANNEL_HELP),
    provider: str = typer.Option(
        ..., "--provider", metavar="PROVIDER", help="twilio (sms) or smtp (email)"
    ),
    setting: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="One setting of the provider's configuration; repeatable (see docs/channels.md)",
        show_default=False,
    ),
) -> None:
    """Configure an org's provider for a channel.

    Needs JOURNEYS_SECRET_KEY; secrets are never printed."""
    from journeys.cli.auditing import cli_actor
    from journeys.messaging import channel_admin

    config: dict[str, Any] = dict(key_values(setting))
    box = _settings().secret_box()
    with transaction(_engine()) as conn:
        channel_admin.set_channel(conn, org, cli_actor(), provider, config, box, channel)
    typer.echo(f"{channel} for org {org} now goes through {provider}")


@channel_app.command("list")
def channel_list(
    org: str = org_filter_option("Only this org's providers"),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """List configured providers (never their credentials)."""
    from journeys.store import channels as channels_repo

    with read_only(_engine()) as conn:
        rows = [
            {
                "orgId": r["org_id"],
                "channel": r["channel"],
                "provider": r["provider"],
                "updatedDateTime": r["updated_at"],
            }
            for r in channels_repo.list_channels(conn, org)
        ]
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['orgId']}  {r['channel']:<6} {r['provider']}")


@channel_app.command("remove")
def channel_remove(
    org: str = org_option(),
    channel: str = typer.Option(..., "--channel", metavar="CHANNEL", help=_CHANNEL_HELP),
) -> None:
    """Remove an org's provider for a channel.

    Its messages go back to the built-in outbox."""
    from journeys.store import channels as channels_repo

    with transaction(_engine()) as conn:
        if not channels_repo.remove_channel(conn, org, channel):
            _fail(f"org {org} has no provider for {channel}")
        record_cli(conn, org, Action.CHANNEL_REMOVE, "channel", (channel,))
    typer.echo(f"removed the {channel} provider of org {org}")


# ------------------------------------------------------------------ webhooks
def _webhook_org(engine: Any, org: str) -> None:
    from journeys.store import accounts as accounts_repo

    with read_only(engine) as conn:
        if accounts_repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")


@webhook_app.command("create")
def webhook_create(
    org: str = org_option(),
    url: str = typer.Option(..., "--url", metavar="URL", help="The http(s) URL receiving the events"),
    secret: str = typer.Option(
        ..., "--secret", metavar="SECRET", help="Shared secret (16+ characters); never printed"
    ),
    events: str = typer.Option(
        "*", "--events", metavar="TYPES", help="Comma-separated event types, or * for all"
    ),
    as_json: bool = json_option(),
) -> None:
    """Subscribe an endpoint to the org's events.

    The endpoint is challenged at once (docs/webhooks.md); needs JOURNEYS_SECRET_KEY."""
    from journeys.webhooks import service

    engine = _engine()
    _webhook_org(engine, org)
    types = service.parse_event_types(events)
    settings = _settings()
    out = service.create(
        engine, settings.secret_box(), org, url, secret, list(types), _now(), settings.outbound_policy()
    )
    with transaction(engine) as conn:
        record_cli(conn, org, Action.WEBHOOK_CREATE, "webhook", (out.id,))
    if as_json:
        _print_json(subscription_json(out))
    else:
        typer.echo(f"created webhook {out.id} (verified)")


@webhook_app.command("list")
def webhook_list(
    org: str = org_option(), as_json: bool = json_option("Print one JSON array instead of text")
) -> None:
    """List the org's webhook subscriptions."""
    from journeys.webhooks import service

    engine = _engine()
    _webhook_org(engine, org)
    found = service.list_all(engine, org)
    if as_json:
        _print_json([subscription_json(s) for s in found])
        return
    for s in found:
        state = "verified" if s.verified_at is not None else "unverified"
        typer.echo(f"{s.id}  {state:<10} {s.url}  {','.join(s.event_types)}")


@webhook_app.command("delete")
def webhook_delete(
    webhook_id: str = typer.Argument(..., metavar="WEBHOOK_ID", help=_WEBHOOK_ID_HELP),
    org: str = org_option(),
) -> None:
    """Delete (disable) a subscription.

    Its undelivered events are dropped."""
    from journeys.webhooks import service

    engine = _engine()
    service.delete(engine, org, webhook_id, _now())
    with transaction(engine) as conn:
        record_cli(conn, org, Action.WEBHOOK_DELETE, "webhook", (webhook_id,))
    typer.echo(f"deleted webhook {webhook_id}")


@webhook_app.command("verify")
def webhook_verify(
    webhook_id: str = typer.Argument(..., metavar="WEBHOOK_ID", help=_WEBHOOK_ID_HELP),
    org: str = org_option(),
) -> None:
    """Challenge the endpoint again.

    Events flow only to verified subscriptions."""
    from journeys.webhooks import service

    engine = _engine()
    settings = _settings()
    service.verify(engine, settings.secret_box(), org, webhook_id, _now(), settings.outbound_policy())
    typer.echo(f"webhook {webhook_id} verified")


@webhook_app.command("deliveries")
def webhook_deliveries(
    org: str = org_option(),
    webhook: str = typer.Option(
        None, "--webhook", metavar="WEBHOOK_ID", help="Only this subscription's deliveries"
    ),
    status: str = typer.Option(
        None, "--status", metavar="STATUS", help="Only deliveries pending, sending, delivered or failed"
    ),
    limit: int = limit_option("At most N deliveries, newest first", maximum=1000),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """List recent deliveries, newest first.

    With their attempts and the last status code."""
    from journeys.webhooks import service

    engine = _engine()
    _webhook_org(engine, org)
    found = service.deliveries(engine, org, webhook, status, limit)
    if as_json:
        _print_json([delivery_json(d) for d in found])
        return
    for d in found:
        code = d.last_status_code if d.last_status_code is not None else "-"
        typer.echo(
            f"{d.id}  {d.event_type:<24} {d.status:<9} attempts={d.attempts} last={code}"
            f"  {d.last_error or ''}".rstrip()
        )
