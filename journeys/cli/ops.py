"""`journeys reply`, `journeys replies`, `journeys cancel …` and `journeys optout …`: the staff's
day-to-day operations — patients' replies — and those of a clinic's bad day (a closure, a patient
who asks at the front desk to get no more texts)."""

from __future__ import annotations

import json
from typing import Any

import typer

from journeys.accounts.audit import Action
from journeys.api.schemas import opt_out_json
from journeys.cli.auditing import record_cli
from journeys.cli.common import (
    _engine,
    _fail,
    _now,
    _print_json,
    _settings,
    json_option,
    limit_option,
    new_app,
    org_option,
)
from journeys.clock import iso_z
from journeys.store.db import read_only, transaction

optout_app = new_app("SMS opt-outs of an org: list, add, remove.")


# ------------------------------------------------------------------ patient replies
def reply(
    org: str = org_option(),
    from_: str = typer.Option(..., "--from", metavar="PHONE", help="The patient's phone number"),
    body: str = typer.Option(..., "--body", metavar="TEXT", help="The reply text"),
    as_json: bool = json_option(),
) -> None:
    """Inject an inbound SMS reply, as if the patient had texted it."""
    from journeys.instances.replies import receive_reply

    engine = _engine()
    phi = _settings().vault(engine).org(org)  # before the transaction (journeys.keys.phi)
    with transaction(engine) as conn:
        result = receive_reply(conn, org, from_, body, _now(), "cli", phi=phi)
        record_cli(conn, org, Action.REPLY_RECEIVE, "inbound_message", (result.message_id,), 1)
    out = {"id": result.message_id, "matched": result.matched, "instanceId": result.instance_id}
    if as_json:
        _print_json(out)
    elif result.matched:
        typer.echo(f"reply handed to instance {result.instance_id}")
    else:
        typer.echo("no instance of this org is waiting for a reply from that number; stored as unmatched")


def replies(
    org: str = org_option(),
    unmatched: bool = typer.Option(
        False, "--unmatched", help="Only replies no instance was waiting for (not consent keywords)"
    ),
    limit: int = limit_option("At most N replies, newest first"),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """List inbound SMS replies, newest first.

    Shows message text: for staff."""
    from journeys.api.schemas import reply_json
    from journeys.instances.replies import list_replies

    engine = _engine()
    phi = _settings().vault(engine).org(org)
    with read_only(engine) as conn:
        rows = [reply_json(r) for r in list_replies(conn, phi, unmatched, limit)]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no replies", err=True)
    handled = {"optOut": "opt-out keyword", "optIn": "opt-in keyword", "help": "HELP keyword"}
    for r in rows:
        where = f"instance {r['instanceId']}" if r["matched"] else "UNMATCHED"
        where = handled.get(str(r["kind"]), where)
        typer.echo(f"{r['receivedDateTime']}  from {r['from']}  {where}: {r['body']}")


# ------------------------------------------------------------------ bulk cancel
def _cancel_body(filter_json: str | None, params: list[str], cancel_all: bool) -> dict[str, Any]:
    """The bulk-cancel body the API would take: --filter and each --param NAME=VALUE (an
    `equals` condition) are combined with And."""
    specs: list[Any] = []
    if filter_json is not None:
        try:
            specs.append(json.loads(filter_json))
        except ValueError:
            _fail("--filter: not valid JSON (give a filterSpecification object)")
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            _fail(f"--param {item!r}: use NAME=VALUE")
        specs.append(
            {
                "type": "JourneyParameterSpecification",
                "parameterName": name.strip(),
                "operator": "equals",
                "rightOperand": value,
            }
        )
    body: dict[str, Any] = {}
    if len(specs) == 1:
        body["filterSpecification"] = specs[0]
    elif specs:
        body["filterSpecification"] = {"type": "AndSpecification", "specifications": specs}
    if cancel_all:
        body["all"] = True
    return body


def cancel(
    org: str = org_option(),
    journey: str = typer.Option(
        ..., "--journey", metavar="ID", help="The journey's id (the API's chatBotId)"
    ),
    filter_json: str = typer.Option(
        None, "--filter", metavar="JSON", help="A search filterSpecification (see docs/api.md)"
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        metavar="NAME=VALUE",
        help="Only instances whose parameter equals VALUE; repeatable",
        show_default=False,
    ),
    cancel_all: bool = typer.Option(False, "--all", help="Every InProgress instance of the journey"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would be cancelled"),
    as_json: bool = json_option(),
) -> None:
    """Cancel every InProgress instance of a journey that matches a filter (e.g. a closure day)."""
    import journeys.catalog.service as catalog
    from journeys.errors import Invalid
    from journeys.instances import service as instance_service
    from journeys.instances.search import parse_cancel

    body = _cancel_body(filter_json, param, cancel_all)
    engine = _engine()
    with read_only(engine) as conn:
        jv = catalog.get_latest(conn, org, journey)
        if jv is None:
            _fail(f"unknown journey {journey} of org {org}")
        assert jv is not None
        try:
            query = parse_cancel(body, {p.name for p in jv.definition.parameters})
            flt = instance_service.stored_filter(jv, query.filter, _settings().vault(engine).org(org))
        except Invalid as exc:  # SearchError, or a condition encrypted values cannot answer
            for error in exc.errors:
                typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        if dry_run:
            count = instance_service.count_matching(conn, jv, flt)
            text = f"{count} InProgress instances of {jv.name} would be cancelled (nothing changed)"
            _print_json({"wouldCancel": count}) if as_json else typer.echo(text)
            return
    try:
        done = instance_service.cancel_all_matching(
            engine, jv, flt, _settings().clock().now, "cli", _settings().cancel_chunk_size
        )
    except instance_service.BulkCancelInterrupted as exc:
        _record_cancel(engine, org, jv.journey_id, exc.cancelled)
        _fail(
            f"the database failed after {exc.cancelled} instances were cancelled (they stay cancelled); "
            "run the same command again to cancel the rest"
        )
    _record_cancel(engine, org, jv.journey_id, done)
    if as_json:
        _print_json({"cancelled": done})
    else:
        typer.echo(f"cancelled {done} instances of {jv.name}")


def _record_cancel(engine: Any, org: str, journey_id: str, count: int) -> None:
    """The audit entry of a bulk cancel (its chunks committed on their own: recorded after)."""
    with transaction(engine) as conn:
        record_cli(conn, org, Action.INSTANCES_CANCEL, "journey", (journey_id,), count)


# ------------------------------------------------------------------ opt-outs
def _org_or_fail(conn: Any, org: str) -> None:
    from journeys.store import accounts as accounts_repo

    if accounts_repo.get_org(conn, org) is None:
        _fail(f"unknown org {org}")


@optout_app.command("list")
def optout_list(
    org: str = org_option(),
    phone: str = typer.Option(None, "--phone", metavar="PHONE", help="Only this number"),
    limit: int = limit_option("At most N numbers, most recently changed first", 1_000),
    as_json: bool = json_option("Print one JSON array instead of text"),
) -> None:
    """Opted-out numbers, most recently changed first (shows phone numbers: for staff)."""
    from journeys.messaging import consent

    engine = _engine()
    with read_only(engine) as conn:
        _org_or_fail(conn, org)
    phi = _settings().vault(engine).org(org)
    with read_only(engine) as conn:
        found = consent.list_opt_outs(conn, phi, phone, limit)
    if as_json:
        _print_json([opt_out_json(o) for o in found])
        return
    if not found:
        typer.echo("no opted-out numbers", err=True)
    for o in found:
        how = f"texted {o.keyword}" if o.keyword else f"by {o.source}"
        reason = f": {o.reason}" if o.reason else ""
        typer.echo(f"{o.phone}  opted out {iso_z(o.updated_at)} ({how}){reason}")


@optout_app.command("add")
def optout_add(
    org: str = org_option(),
    phone: str = typer.Option(..., "--phone", metavar="PHONE", help="The patient's phone number"),
    reason: str = typer.Option(None, "--reason", metavar="TEXT", help="Why (a note for staff)"),
    as_json: bool = json_option(),
) -> None:
    """Opt a number out of the org's SMS, as if the patient had texted STOP."""
    from journeys.messaging import consent

    engine = _engine()
    with read_only(engine) as conn:
        _org_or_fail(conn, org)
    phi = _settings().vault(engine).org(org)  # before the transaction (journeys.keys.phi)
    with transaction(engine) as conn:
        created, record = consent.add_opt_out(conn, phi, phone, reason, "cli", _now())
        if created:  # the number is PHI: the entry counts the change, it does not name it
            record_cli(conn, org, Action.OPT_OUT_ADD, "sms_consent", (), 1)
    if as_json:
        _print_json(opt_out_json(record))
    elif created:
        typer.echo(f"{record.phone} is opted out: no SMS goes to it any more")
    else:
        typer.echo(f"{record.phone} was already opted out (unchanged)")


@optout_app.command("remove")
def optout_remove(
    org: str = org_option(),
    phone: str = typer.Option(..., "--phone", metavar="PHONE", help="The patient's phone number"),
) -> None:
    """Opt a number back in, as if the patient had texted START."""
    from journeys.messaging import consent

    engine = _engine()
    with read_only(engine) as conn:
        _org_or_fail(conn, org)
    phi = _settings().vault(engine).org(org)  # before the transaction (journeys.keys.phi)
    with transaction(engine) as conn:
        removed = consent.remove_opt_out(conn, phi, phone, "cli", _now())
        if removed:
            record_cli(conn, org, Action.OPT_OUT_REMOVE, "sms_consent", (), 1)
    if not removed:
        _fail("that phone number is not opted out")
    typer.echo("opted back in: SMS to that number go out again")
