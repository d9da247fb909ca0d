"""`journeys keys status|rotate`: the key-encryption key and moving to a new JOURNEYS_SECRET_KEY."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from journeys.cli.common import _engine, _fail, _print_json, _settings, json_option, new_app
from journeys.keys import rotation
from journeys.keys.box import SecretBox
from journeys.keys.envelope import KeyProvider
from journeys.keys.material import HOW_TO
from journeys.keys.phi import OrgPhi
from journeys.keys.service import rewrap_batch
from journeys.lifecycle import encrypt as existing
from journeys.store import accounts as accounts_repo
from journeys.store import keys as keys_repo
from journeys.store.db import read_only, transaction

keys_app = new_app(
    "Encryption keys: each org's data keys are wrapped by a key derived from JOURNEYS_SECRET_KEY.\n\n"
    "To rotate: set JOURNEYS_SECRET_KEY to a new key and JOURNEYS_PREVIOUS_SECRET_KEYS to the old one "
    "on every server and worker, run `journeys keys rotate`, then remove the old key."
)


def _keys() -> tuple[KeyProvider, SecretBox]:
    settings = _settings()
    provider = settings.key_provider()
    if provider is None:
        _fail(f"JOURNEYS_SECRET_KEY is not set: {HOW_TO}")
    return provider, settings.secret_box()


def _print_status(status: rotation.KeyStatus) -> None:
    typer.echo(f"key-encryption key: {status.current_kek}")
    current, other = status.data_keys_current, status.data_keys_other
    typer.echo(f"data keys: {current} wrapped by it, {other} by a previous key")
    typer.echo(
        f"sealed secrets: {status.secrets_current} under the current key, {status.secrets_other} under a "
        f"previous one, {status.secrets_unreadable} under none this server has"
    )


@keys_app.command("status")
def keys_status(as_json: bool = json_option()) -> None:
    """Which key wraps each org's data keys and seals each secret (exit 0 either way)."""
    provider, box = _keys()
    with read_only(_engine()) as conn:
        status = rotation.status(conn, provider, box)
    if as_json:
        _print_json({**dataclasses.asdict(status), "done": status.done})
        return
    _print_status(status)
    if not status.done:
        typer.echo("run `journeys keys rotate` to move them all to the current key")


@keys_app.command("rotate")
def keys_rotate(as_json: bool = json_option()) -> None:
    """Rewrap every data key and reseal every secret under the current JOURNEYS_SECRET_KEY.

    Reads what the keys in JOURNEYS_PREVIOUS_SECRET_KEYS wrapped; in batches, each committed, so it
    can be stopped and run again. Servers keep working throughout when they have both keys."""
    provider, box = _keys()
    engine = _engine()
    rewrapped = 0
    while True:
        with transaction(engine) as conn:
            done = rewrap_batch(conn, provider)
        if not done:
            break
        rewrapped += done
        if not as_json:
            typer.echo(f"rewrapped {rewrapped} data keys so far", err=True)
    with transaction(engine) as conn:
        resealed, unreadable = rotation.reseal_secrets(conn, box)
    with read_only(engine) as conn:
        status = rotation.status(conn, provider, box)
    if as_json:
        counts = {"rewrapped": rewrapped, "resealed": resealed, "unreadable": unreadable}
        _print_json({**counts, "done": status.done})
        return
    typer.echo(f"rewrapped {rewrapped} data keys and resealed {resealed} secrets")
    _print_status(status)
    if unreadable:
        typer.echo(
            f"{unreadable} sealed secrets open with no key this server has: set them again "
            "(journeys channel set, the webhook, the user's TOTP)"
        )
    if status.done:
        typer.echo("done: the previous keys can be removed from JOURNEYS_PREVIOUS_SECRET_KEYS")


def encrypt_existing(
    org: str = typer.Option(None, "--org", metavar="ORG", help="Only this org (default: every org)"),
    batch_size: int = typer.Option(
        500, "--batch-size", metavar="N", min=1, max=10_000, help="Rows per transaction"
    ),
    as_json: bool = json_option("Print one JSON object at the end (progress still goes to stderr)"),
) -> None:
    """Encrypt patient data stored before JOURNEYS_SECRET_KEY was set, in place.

    Instances, outbox messages, inbound messages and consent records of each org, in batches
    (each committed: stop it at will, and run it again to go on); progress on stderr. Servers
    and workers keep running: an instance changed meanwhile is left for the next run."""
    settings = _settings()
    if settings.key_provider() is None:
        _fail(f"JOURNEYS_SECRET_KEY is not set: {HOW_TO}")
    engine = _engine()
    with read_only(engine) as conn:
        if org is not None and not keys_repo.org_exists(conn, org):
            _fail(f"unknown org {org}")
        orgs = [org] if org is not None else [str(o["org_id"]) for o in accounts_repo.list_orgs(conn)]
    vault = settings.vault(engine)
    report = [_encrypt_org(engine, vault.org(org_id), batch_size) for org_id in orgs]
    done = all(not any(r["remaining"].values()) for r in report)
    if as_json:
        _print_json({"orgs": report, "done": done})
        return
    for r in report:
        sealed = ", ".join(f"{n} {kind}" for kind, n in r["sealed"].items())
        typer.echo(f"org {r['org']}: sealed {sealed}")
    typer.echo("done: nothing is stored plain" if done else "some rows changed meanwhile: run it again")


def _encrypt_org(engine: Any, phi: OrgPhi, batch_size: int) -> dict[str, Any]:
    with read_only(engine) as conn:
        total = existing.remaining(conn, phi.org_id)
    sealed = dict.fromkeys(existing.KINDS, 0)
    for kind in existing.KINDS:
        after = ""
        while total[kind]:
            with transaction(engine) as conn:
                batch = existing.encrypt_batch(conn, phi, kind, after, batch_size)
            if not batch.read:
                break
            sealed[kind] += batch.sealed
            after = batch.after
            typer.echo(f"org {phi.org_id}: {kind} {sealed[kind]} of {total[kind]} sealed", err=True)
    with read_only(engine) as conn:
        left = existing.remaining(conn, phi.org_id)
    return {"org": phi.org_id, "sealed": sealed, "remaining": left}
