"""Encrypting what was stored before JOURNEYS_SECRET_KEY was set (`journeys encrypt-existing`).

For one org at a time, in batches (each committed by the caller, so the command can stop and
run again; what is done stays done): instances (parameters and interpreter state sealed; the
searchable rows, identifier key and the number a reply is awaited from turned into blind
indexes), outbox messages (recipient, subject and texts), inbound messages (sender and text)
and consent records (number and staff's note). Servers and workers keep running meanwhile: an
instance is written only if it has not changed since it was read (a worker batch holding it
runs it again), and one that did change is left for the next run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from journeys.catalog.service import load_version
from journeys.instances.trigger import identifier_key
from journeys.keys.phi import SEALED, OrgPhi
from journeys.keys.searchable import parameter_rows, prefix_names
from journeys.messaging.queue import recipient_key
from journeys.store import instances as instance_repo
from journeys.store import plain as repo

KINDS = tuple(repo.PLAIN)  # instances, messages, replies, opt-outs
EMPTY_STATE = "{}"


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of one kind: how many plain rows were read, how many sealed now (the rest
    changed meanwhile, or were merged into a record kept sealed), and where the next starts."""

    kind: str
    read: int
    sealed: int
    after: str


def remaining(conn: Connection, org_id: str) -> dict[str, int]:
    """How many rows of each kind the org still has stored plain."""
    return repo.count_plain(conn, org_id)


def encrypt_batch(conn: Connection, phi: OrgPhi, kind: str, after: str, limit: int) -> Batch:
    """Seal the org's next `limit` plain rows of `kind` after the key `after`."""
    rows = repo.next_plain(conn, kind, phi.org_id, after, limit)
    seal = {"instances": _instance, "messages": _message, "replies": _reply, "opt-outs": _consent}[kind]
    sealed = sum(1 for row in rows if seal(conn, phi, row))
    last = rows[-1][_KEY[kind]] if rows else after
    return Batch(kind, len(rows), sealed, str(last))


_KEY = {"instances": "instance_id", "messages": "message_id", "replies": "message_id", "opt-outs": "phone"}


def _instance(conn: Connection, phi: OrgPhi, row: dict[str, Any]) -> bool:
    org_id, instance_id = phi.org_id, row["instance_id"]
    defn = load_version(conn, org_id, row["journey_id"], int(row["version"]))
    stored = orjson.loads(row["parameters"] or "{}")
    params = {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in stored.items()
              if v is not None}  # fmt: skip
    key = identifier_key(defn, params, phi)
    if key is not None and row["status"] == "InProgress":
        if repo.identifier_taken(conn, org_id, row["journey_id"], key, instance_id):
            key = None  # a newer instance took the identifier: that one is what subflows find
    state = row["state"] or EMPTY_STATE
    waiting = row["waiting_reply_phone"]
    sealed = repo.SealedInstance(
        instance_id=instance_id,
        rev=int(row["rev"]),
        parameters=phi.seal_json(stored),
        state=state if state == EMPTY_STATE or state.startswith(SEALED) else phi.seal(state),
        identifier_key=key,
        waiting_reply_phone=phi.phone_key(waiting) if waiting and waiting.startswith("+") else waiting,
    )
    if not repo.seal_instance(conn, org_id, sealed):
        return False
    repo.delete_parameters(conn, org_id, instance_id)
    rows = parameter_rows(phi, (org_id, instance_id), row["journey_id"], params, params, prefix_names(defn))
    instance_repo.insert_parameters(conn, rows)
    return True


def _sealed(phi: OrgPhi, value: str | None) -> str | None:
    """A value sealed if it is not yet."""
    if value is None or value.startswith(SEALED):
        return value
    return phi.seal(value)


def _message(conn: Connection, phi: OrgPhi, row: dict[str, Any]) -> bool:
    to = str(row["to_address"])
    values = {
        "to_address": recipient_key(phi, row["channel"], to),
        "recipient": phi.seal(to),
        "subject": _sealed(phi, row["subject"]),
        "body": _sealed(phi, row["body"]),
        "html": _sealed(phi, row["html"]),
    }
    repo.update_row(conn, "messages", phi.org_id, row["message_id"], values)
    return True


def _reply(conn: Connection, phi: OrgPhi, row: dict[str, Any]) -> bool:
    values = {"from_address": phi.seal(row["from_address"]), "body": _sealed(phi, row["body"])}
    repo.update_row(conn, "replies", phi.org_id, row["message_id"], values)
    return True


def _consent(conn: Connection, phi: OrgPhi, row: dict[str, Any]) -> bool:
    """A plain record becomes the number's blind index and the number sealed; where the number
    also has a record kept sealed (changed since the key was set), the newer one stays."""
    org_id, number = phi.org_id, str(row["phone"])
    key = phi.phone_key(number)
    newer = repo.consent_updated_at(conn, org_id, key)
    if newer is not None:
        if newer >= row["updated_at"]:
            repo.delete_row(conn, "opt-outs", org_id, number)
            return False
        repo.delete_row(conn, "opt-outs", org_id, key)
    values = {"phone": key, "number": phi.seal(number), "reason": _sealed(phi, row["reason"])}
    repo.update_row(conn, "opt-outs", org_id, number, values)
    return True
