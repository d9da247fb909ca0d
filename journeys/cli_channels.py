"""`journeys channel …` and `journeys webhook …`: delivery providers and event webhooks."""

from __future__ import annotations

from typing import Any

import typer

from journeys.cli_common import _engine, _fail, _now, _print_json, _settings
from journeys.store.db import read_only, transaction

channel_app = typer.Typer(
    help="Delivery providers per org and channel (credentials stored encrypted).", no_args_is_help=True
)
webhook_app = typer.Typer(help="Event webhooks to the org's own systems.", no_args_is_help=True)


# ------------------------------------------------------------------ channels
@channel_app.command("set")
def channel_set(
    org: str = typer.Option(..., "--org", help="Org id"),
    channel: str = typer.Option(..., "--channel", help="sms or email"),
    provider: str = typer.Option(..., "--provider", help="twilio (sms) or smtp (email)"),
    setting: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE of the provider's configuration (repeatable)"
    ),
) -> None:
    """Configure an org's provider for a channel. Needs JOURNEYS_SECRET_KEY; secrets are never printed."""
    from journeys.channels import registry
    from journeys.channels.secrets import SecretBox, SecretKeyMissing
    from journeys.store import accounts as accounts_repo
    from journeys.store import channels as channels_repo

    config: dict[str, Any] = {}
    for item in setting:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set {key!r}: use KEY=VALUE")
        config[key.strip()] = value
    try:
        config = registry.check_config(provider, channel, config)
        sealed = SecretBox(_settings().secret_key).seal(config)
    except (registry.ProviderConfigError, SecretKeyMissing) as exc:
        _fail(str(exc))
    engine = _engine()
    with transaction(engine) as conn:
        if accounts_repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")
        channels_repo.set_channel(conn, org, channel, provider, sealed, _now())
    typer.echo(f"{channel} for org {org} now goes through {provider}")


@channel_app.command("list")
def channel_list(
    org: str = typer.Option(None, "--org"), as_json: bool = typer.Option(False, "--json")
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
    org: str = typer.Option(..., "--org"), channel: str = typer.Option(..., "--channel")
) -> None:
    """Remove an org's provider for a channel (its messages go back to the built-in outbox)."""
    from journeys.store import channels as channels_repo

    with transaction(_engine()) as conn:
        if not channels_repo.remove_channel(conn, org, channel):
            _fail(f"org {org} has no provider for {channel}")
    typer.echo(f"removed the {channel} provider of org {org}")


# ------------------------------------------------------------------ webhooks
def _webhook_call(fn: Any) -> Any:
    from journeys.engine.webhooks import WebhookError

    try:
        return fn()
    except WebhookError as exc:
        _fail("; ".join(exc.errors))


def _webhook_org(engine: Any, org: str) -> None:
    from journeys.store import accounts as accounts_repo

    with read_only(engine) as conn:
        if accounts_repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")


@webhook_app.command("create")
def webhook_create(
    org: str = typer.Option(..., "--org", help="Org id"),
    url: str = typer.Option(..., "--url", help="http(s) URL receiving the events"),
    secret: str = typer.Option(..., "--secret", help="Shared secret (16+ characters); never printed"),
    events: str = typer.Option("*", "--events", help="Comma-separated event types, or * for all"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Subscribe an endpoint; it is challenged at once (needs JOURNEYS_SECRET_KEY)."""
    from journeys.engine import webhooks as service

    engine = _engine()
    _webhook_org(engine, org)
    types = service.parse_event_types(events)
    out = _webhook_call(
        lambda: service.create(engine, _settings().secret_key, org, url, secret, list(types), _now())
    )
    if as_json:
        _print_json(out)
    else:
        typer.echo(f"created webhook {out['id']} (verified)")


@webhook_app.command("list")
def webhook_list(
    org: str = typer.Option(..., "--org"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """List the org's webhook subscriptions."""
    from journeys.engine import webhooks as service

    engine = _engine()
    _webhook_org(engine, org)
    rows = service.list_all(engine, org)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        state = "verified" if r["verified"] else "unverified"
        typer.echo(f"{r['id']}  {state:<10} {r['url']}  {','.join(r['eventTypes'])}")


@webhook_app.command("delete")
def webhook_delete(webhook_id: str, org: str = typer.Option(..., "--org")) -> None:
    """Delete (disable) a subscription; its undelivered events are dropped."""
    from journeys.engine import webhooks as service

    engine = _engine()
    _webhook_call(lambda: service.delete(engine, org, webhook_id, _now()))
    typer.echo(f"deleted webhook {webhook_id}")


@webhook_app.command("verify")
def webhook_verify(webhook_id: str, org: str = typer.Option(..., "--org")) -> None:
    """Challenge the endpoint again (events flow only to verified subscriptions)."""
    from journeys.engine import webhooks as service

    engine = _engine()
    _webhook_call(lambda: service.verify(engine, _settings().secret_key, org, webhook_id, _now()))
    typer.echo(f"webhook {webhook_id} verified")


@webhook_app.command("deliveries")
def webhook_deliveries(
    org: str = typer.Option(..., "--org"),
    webhook: str = typer.Option(None, "--webhook", help="Only this subscription"),
    status: str = typer.Option(None, "--status", help="pending, sending, delivered or failed"),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recent deliveries, newest first, with attempts and the last status code."""
    from journeys.engine import webhooks as service

    engine = _engine()
    _webhook_org(engine, org)
    rows = _webhook_call(lambda: service.deliveries(engine, org, webhook, status, limit))
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        code = r["lastStatusCode"] if r["lastStatusCode"] is not None else "-"
        typer.echo(
            f"{r['id']}  {r['type']:<24} {r['status']:<9} attempts={r['attempts']} last={code}"
            f"  {r['lastError'] or ''}".rstrip()
        )
