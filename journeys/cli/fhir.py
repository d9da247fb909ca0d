"""`journeys fhir set|list|remove`: the FHIR feeds an org's Appointment endpoints apply."""

from __future__ import annotations

from pathlib import Path

import typer

from journeys.cli.auditing import cli_actor
from journeys.cli.common import _engine, _fail, _print_json, json_option, new_app, org_option
from journeys.clock import iso_z
from journeys.definitions.problems import DefinitionError
from journeys.store import accounts as accounts_repo
from journeys.store.db import read_only, transaction

fhir_app = new_app(
    "FHIR feeds: how an org's FHIR Appointments (POST/PUT /fhir/orgs/ORG/Appointment, and a "
    "Subscription's /notify) start, move and cancel a journey (docs/feeds.md)."
)


@fhir_app.command("set")
def fhir_set(
    mapping_file: Path = typer.Argument(..., metavar="FILE", help="A FHIR feed's mapping file (kind: fhir)"),
    as_json: bool = json_option(),
) -> None:
    """Check a FHIR feed's mapping and store it for its org (replacing one of the same name).

    Every problem is listed with its line, and nothing is stored, when there is one."""
    from journeys.feeds.registry import set_fhir_feed

    try:
        text = mapping_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {mapping_file}: {getattr(exc, 'strerror', None) or 'not UTF-8'}", 2)
    try:
        with transaction(_engine()) as conn:
            feed = set_fhir_feed(conn, cli_actor(), text, str(mapping_file))
    except DefinitionError as exc:  # each problem on its line, as `journeys hl7 check` lists them
        for line in exc.messages:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    if as_json:
        _print_json({"org": feed.org_id, "feed": feed.name, "journey": feed.journey_id})
    else:
        typer.echo(f"stored FHIR feed {feed.name} of org {feed.org_id} (journey {feed.journey_id})")


@fhir_app.command("list")
def fhir_list(org: str = org_option(), as_json: bool = json_option("Print one JSON array")) -> None:
    """The org's stored feeds."""
    from journeys.feeds.registry import list_feeds

    with read_only(_engine()) as conn:
        if "\x00" in org or accounts_repo.get_org(conn, org) is None:
            _fail(f"unknown org {org}")
        feeds = list_feeds(conn, org)
    rows = [
        {"feed": f.name, "kind": f.kind, "journey": f.journey_id, "updatedDateTime": iso_z(f.updated_at)}
        for f in feeds
    ]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no feeds", err=True)
    for r in rows:
        typer.echo(f"{r['feed']}  {r['kind']}  journey {r['journey']}  updated {r['updatedDateTime']}")


@fhir_app.command("remove")
def fhir_remove(
    org: str = org_option(),
    feed: str = typer.Option(..., "--feed", metavar="NAME", help="The feed's name (its mapping's feed:)"),
) -> None:
    """Remove a stored feed: the org's FHIR endpoints no longer apply it."""
    from journeys.feeds.registry import remove_feed

    with transaction(_engine()) as conn:
        remove_feed(conn, cli_actor(), org, feed)
    typer.echo(f"removed feed {feed} of org {org}")
