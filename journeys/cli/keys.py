"""`journeys keys status|rotate`: the key-encryption key and moving to a new JOURNEYS_SECRET_KEY."""

from __future__ import annotations

import dataclasses

import typer

from journeys.cli.common import _engine, _fail, _print_json, _settings, json_option, new_app
from journeys.keys import rotation
from journeys.keys.box import SecretBox
from journeys.keys.envelope import KeyProvider
from journeys.keys.material import HOW_TO
from journeys.keys.service import rewrap_batch
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
