"""`journeys audit export|verify`, and recording the command line's own actions in the audit log
(actor kind `cli`, its id the operating-system user that ran the command)."""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime

import typer
from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.cli.common import _engine, _fail, _now, _print_json, json_option, new_app, org_option
from journeys.clock import iso_z
from journeys.store import accounts as accounts_repo
from journeys.store.db import read_only, transaction

audit_app = new_app("The audit log: who did what (append-only, hash-chained).")


def cli_actor_id() -> str:
    """The operating-system user running the command, as an id (or "unknown")."""
    try:
        name = getpass.getuser()
    except Exception:  # no login name (e.g. a container without a passwd entry)
        return "unknown"
    cleaned = re.sub(r"[^A-Za-z0-9._:@+-]", "_", name)[:64].lstrip("._:@+-")
    return cleaned or "unknown"


def cli_actor() -> audit.Actor:
    """The command line as the actor of a change (journeys.accounts.audit.Actor)."""
    return audit.Actor(audit.ActorKind.CLI, cli_actor_id(), _now())


def record_cli(
    conn: Connection,
    org_id: str,
    action: audit.Action,
    target_kind: str | None = None,
    target_ids: tuple[str, ...] = (),
    count: int | None = None,
) -> None:
    """Record one of the command line's actions, in the transaction that makes the change."""
    entry = audit.AuditEntry(
        org_id=org_id,
        at=_now(),
        actor_kind=audit.ActorKind.CLI,
        actor_id=cli_actor_id(),
        action=action,
        target_kind=target_kind,
        target_ids=target_ids,
        count=count,
    )
    audit.record(conn, entry)


def _check_org(conn: Connection, org: str) -> None:
    if "\x00" in org or accounts_repo.get_org(conn, org) is None:
        _fail(f"unknown org {org}")


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"--since {text!r}: use an ISO 8601 time such as 2026-11-30T08:00:00Z", 2)
        raise  # unreachable: _fail exits
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@audit_app.command("export")
def audit_export(
    org: str = org_option(),
    since: str = typer.Option(
        None,
        "--since",
        metavar="TIME",
        help="Only entries at or after TIME (ISO 8601; UTC without an offset)",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line (JSON lines)"),
) -> None:
    """Print the org's audit log, oldest first.

    Each entry: when, who (user, token, cli or feed, with its id), the action, its targets' ids,
    a count, the client address, and the hash chain (prevHash, hash). Exporting is recorded too."""
    when = _parse_since(since)
    engine = _engine()
    count = 0
    with read_only(engine) as conn:
        _check_org(conn, org)
        for rec in audit.export(conn, org, when):
            count += 1
            if as_json:
                _print_json(rec.wire())
            else:
                e = rec.entry
                target = f"{e.target_kind}:{','.join(e.target_ids)}" if e.target_kind else "-"
                typer.echo(
                    f"{rec.seq}  {iso_z(e.at)}  {e.actor_kind.value}:{e.actor_id or '-'}  {e.action.value}  "
                    f"{target}  count={'-' if e.count is None else e.count}  from {e.client_address or '-'}"
                )
    with transaction(engine) as conn:
        record_cli(conn, org, audit.Action.AUDIT_EXPORT, count=count)


@audit_app.command("verify")
def audit_verify(org: str = org_option(), as_json: bool = json_option()) -> None:
    """Check the org's audit log has not been tampered with.

    Walks the hash chain from its first entry; exits 1 naming the first broken link."""
    with read_only(_engine()) as conn:
        _check_org(conn, org)
        result = audit.verify(conn, org)
    if as_json:
        _print_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "brokenSeq": result.broken_seq,
                "problem": result.problem,
            }
        )
    elif result.ok:
        typer.echo(f"audit log of {org}: {result.checked} entries, chain intact")
    if not result.ok:
        typer.echo(
            f"error: audit log of {org} is broken at entry {result.broken_seq}: {result.problem}", err=True
        )
        raise typer.Exit(1)
