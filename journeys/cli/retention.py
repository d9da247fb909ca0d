"""`journeys purge`, `journeys erase` and `journeys org retention`: how long patient data is kept,
and erasing it (journeys.lifecycle)."""

from __future__ import annotations

from datetime import datetime

import typer
from sqlalchemy.engine import Engine

from journeys.accounts.audit import MAX_TARGET_IDS, Action
from journeys.cli.auditing import record_cli
from journeys.cli.common import _engine, _now, _print_json, _settings, json_option, org_option
from journeys.cli.ops import _org_or_fail
from journeys.clock import iso_z
from journeys.lifecycle import erasure, retention
from journeys.store.db import read_only, transaction

BATCH = 500


def purge(
    org: str = org_option(),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be purged; change nothing"),
    as_json: bool = json_option("Print one JSON object instead of text (progress still goes to stderr)"),
) -> None:
    """Reduce the org's instances that ended longer ago than their retention to tombstones.

    What the worker does on its schedule, now: ids, journey, status, dates and steps stay;
    parameters, messages, replies and timeline details are erased. In committed batches."""
    settings, engine, now = _settings(), _engine(), _now()
    with read_only(engine) as conn:
        plan = retention.plan(conn, org, now, settings.retention_days)
    counts = []
    for journey in plan:
        if dry_run:
            with read_only(engine) as conn:
                counts.append(retention.purgeable(conn, org, journey))
        else:
            counts.append(_purge_journey(engine, org, journey, now))
    total: int = sum(counts)
    if total and not dry_run:
        with transaction(engine) as conn:
            record_cli(conn, org, Action.RETENTION_PURGE, "instance", (), total)
        retention.forget_old_pages(engine)
    if as_json:
        report = [
            {"journeyId": j.journey_id, "name": j.name, "retentionDays": j.days, "from": j.source,
             "endedBefore": iso_z(j.cutoff), "purgeable" if dry_run else "purged": n}
            for j, n in zip(plan, counts, strict=True)
        ]  # fmt: skip
        _print_json({"orgId": org, "dryRun": dry_run, "journeys": report})
        return
    verb = "would purge" if dry_run else "purged"
    for j, n in zip(plan, counts, strict=True):
        typer.echo(
            f"{j.name} ({j.journey_id}): keeps {j.days} days ({j.source}); "
            f"{verb} {n} instances that ended before {iso_z(j.cutoff)}"
        )


def _purge_journey(engine: Engine, org: str, journey: retention.JourneyRetention, now: datetime) -> int:
    purged = 0
    while True:
        with transaction(engine) as conn:
            n = retention.purge_batch(conn, org, journey, now, BATCH)
        if not n:
            return purged
        purged += n
        typer.echo(f"{journey.name}: {purged} purged so far", err=True)


def erase(
    org: str = org_option(),
    param: str = typer.Option(..., "--param", metavar="NAME=VALUE", help="Who: a parameter and its value"),
    as_json: bool = json_option(),
) -> None:
    """Erase one patient's data on their request: every instance whose parameter NAME is VALUE
    (any journey), the messages to their numbers and addresses, their replies, and their consent
    records' numbers (a STOP stays honoured: the record is kept by its blind index only).
    Audited. Prints only counts and instance ids."""
    name, value = erasure.parse_param(param)
    engine = _engine()
    with read_only(engine) as conn:
        _org_or_fail(conn, org)
    phi = _settings().vault(engine).org(org)  # before the transaction (journeys.keys.phi)
    with transaction(engine) as conn:
        done = erasure.erase(conn, phi, name, value, _now())
        named = done.instances if len(done.instances) <= MAX_TARGET_IDS else ()  # else the count only
        record_cli(conn, org, Action.PATIENT_ERASE, "instance", named, len(done.instances))
    retention.forget_old_pages(engine)
    counts = {"messages": done.messages, "replies": done.replies, "optOuts": done.opt_outs}
    if as_json:
        _print_json({"orgId": org, "instances": list(done.instances), **counts})
        return
    typer.echo(
        f"erased {len(done.instances)} instances, {done.messages} messages, {done.replies} replies "
        f"and {done.opt_outs} consent records' numbers"
    )


def org_retention(
    org: str = org_option(),
    days: str = typer.Option(
        None, "--days", metavar="N", help="Keep ended instances' data N days (1-36500), or 'default'"
    ),
    as_json: bool = json_option(),
) -> None:
    """Show or set how long the org's ended instances keep their patient data (a journey's
    `retention_days` overrides it; without either, JOURNEYS_RETENTION_DAYS)."""
    settings, engine = _settings(), _engine()
    if days is not None:
        with transaction(engine) as conn:
            retention.set_org_days(conn, org, days)
            record_cli(conn, org, Action.ORG_RETENTION, "org", (org,), 1)
    with read_only(engine) as conn:
        plan = retention.plan(conn, org, _now(), settings.retention_days)
        _, org_days = retention.org_days(conn, org)
    journeys = [
        {"journeyId": j.journey_id, "name": j.name, "retentionDays": j.days, "from": j.source} for j in plan
    ]
    out = {"orgId": org, "retentionDays": org_days or settings.retention_days, "default": org_days is None}
    if as_json:
        _print_json({**out, "journeys": journeys})
        return
    source = "the default" if org_days is None else "set for the org"
    typer.echo(f"org {org} keeps ended instances' data {out['retentionDays']} days ({source})")
    for j in journeys:
        typer.echo(f"  {j['name']} ({j['journeyId']}): {j['retentionDays']} days ({j['from']})")
