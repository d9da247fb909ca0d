"""`journeys api set|list|remove`: the clinic systems an org's http_request steps call by name."""

from __future__ import annotations

import typer

from journeys.cli.auditing import cli_actor
from journeys.cli.common import _engine, _print_json, _settings, json_option, key_values, new_app, org_option
from journeys.clock import iso_z
from journeys.registered_apis import service
from journeys.registered_apis.settings import AUTH_KINDS
from journeys.store.db import read_only, transaction

api_app = new_app(
    "Registered APIs: clinic systems http_request steps call by name (`api: ehr`), with their base URL "
    "and credentials.\n\nCredentials are stored encrypted (JOURNEYS_SECRET_KEY) and never printed."
)
_NAME_HELP = "The API's name, as http_request steps give it (e.g. ehr)"


@api_app.command("set")
def api_set(
    org: str = org_option(),
    name: str = typer.Option(..., "--name", metavar="NAME", help=_NAME_HELP),
    base_url: str = typer.Option(..., "--base-url", metavar="URL", help="What each step's path follows"),
    auth: str = typer.Option("none", "--auth", metavar="KIND", help=f"One of {', '.join(AUTH_KINDS)}"),
    setting: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="One setting of the authentication (e.g. token=…, client_id=…); repeatable (docs/operations.md)",
        show_default=False,
    ),
) -> None:
    """Register an API of the org, or replace its settings. Needs JOURNEYS_SECRET_KEY."""
    given = key_values(setting)
    box = _settings().secret_box()
    with transaction(_engine()) as conn:
        api = service.set_api(conn, cli_actor(), org, name, base_url, auth, given, box)
    typer.echo(f"registered API {api.name} of org {org}: {api.base_url} ({api.auth})")


@api_app.command("list")
def api_list(
    org: str = org_option(), as_json: bool = json_option("Print one JSON array instead of text")
) -> None:
    """The org's registered APIs (never their credentials)."""
    with read_only(_engine()) as conn:
        apis = service.list_apis(conn, org)
    rows = [{"name": a.name, "baseUrl": a.base_url, "auth": a.auth, "updatedDateTime": iso_z(a.updated_at)}
            for a in apis]  # fmt: skip
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no registered APIs", err=True)
    for r in rows:
        typer.echo(f"{r['name']}  {r['baseUrl']}  ({r['auth']})")


@api_app.command("remove")
def api_remove(
    org: str = org_option(), name: str = typer.Option(..., "--name", metavar="NAME", help=_NAME_HELP)
) -> None:
    """Remove a registered API: steps that call it fail (or take their on_failure) from now on."""
    with transaction(_engine()) as conn:
        service.remove_api(conn, cli_actor(), org, name)
    typer.echo(f"removed registered API {name} of org {org}")
