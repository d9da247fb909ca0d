"""Erasing one patient's data on request (`journeys erase --org ORG --param NAME=VALUE`).

The patient is found as search's `equals` finds them: every instance, of any journey of the org,
whose parameter NAME is VALUE (or, for a phone number, its normalised form). Those instances are
reduced to tombstones (an active one is cancelled first), and with them go the messages sent to
the numbers and addresses in their parameters, the replies from those numbers (also those that
answered no instance), and the numbers' consent records' sealed numbers and notes: a record is
kept by its blind index only, so a STOP the patient sent is still honoured. Where the org's data
is not encrypted the consent record keeps the number itself (it must be matched to be honoured)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.catalog.service import list_latest, load_version
from journeys.errors import Invalid
from journeys.keys.phi import OrgPhi
from journeys.messaging.phone import normalise_phone
from journeys.messaging.queue import recipient_key
from journeys.store import retention as repo

INBOUND_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed: the instances made tombstones (ids), and how many messages,
    replies and consent records' numbers."""

    instances: tuple[str, ...]
    messages: int
    replies: int
    opt_outs: int


def parse_param(text: str) -> tuple[str, str]:
    """NAME=VALUE (the parameter's name and the value the patient has), or Invalid."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise Invalid(["--param: must be NAME=VALUE, e.g. patientId=100001"])
    return name.strip(), value.strip()


def erase(conn: Connection, phi: OrgPhi, name: str, value: str, now: datetime) -> Erasure:
    """Erase the patient whose parameter `name` is `value` (see the module)."""
    org_id, key = phi.org_id, name.lower()
    journeys = list_latest(conn, org_id)
    if not any(p.name.lower() == key for jv in journeys for p in jv.definition.parameters):
        raise Invalid([f"--param: no journey of org {org_id} has a parameter {name}"])
    values = sorted({value, normalise_phone(value) or value})
    stored = [phi.blind(key, v) for v in values]
    found = (repo.instances_with(conn, org_id, jv.journey_id, key, stored) for jv in journeys)
    ids = sorted({i for some in found for i in some})
    numbers, addresses = _contacts(conn, phi, ids)
    recipients = [recipient_key(phi, "sms", n) for n in numbers]
    recipients += [recipient_key(phi, "email", a) for a in addresses]
    messages = repo.delete_messages_to(conn, org_id, recipients)
    replies = _erase_unmatched_replies(conn, phi, numbers)
    opt_outs = repo.erase_consent_numbers(conn, org_id, [phi.phone_key(n) for n in numbers])
    own_messages, own_replies = repo.tombstone(conn, org_id, ids, now)
    return Erasure(tuple(ids), messages + own_messages, replies + own_replies, opt_outs)


def _contacts(conn: Connection, phi: OrgPhi, ids: list[str]) -> tuple[set[str], set[str]]:
    """The phone numbers (normalised) and email addresses in the instances' parameters."""
    numbers: set[str] = set()
    addresses: set[str] = set()
    for row in repo.instance_rows(conn, phi.org_id, ids):
        defn = load_version(conn, phi.org_id, row["journey_id"], int(row["version"]))
        params = phi.open_json(row["parameters"]) or {}
        for p in defn.parameters:
            given = params.get(p.name)
            if not isinstance(given, str) or not given.strip():
                continue
            if p.type == "phone" and (number := normalise_phone(given)):
                numbers.add(number)
            elif p.type == "email":
                addresses.add(given.strip())
    return numbers, addresses


def _erase_unmatched_replies(conn: Connection, phi: OrgPhi, numbers: set[str]) -> int:
    """Delete the org's inbound messages from `numbers` that answered no instance (their
    senders are sealed: each is opened to compare)."""
    if not numbers:
        return 0
    erased, after = 0, ""
    while rows := repo.unmatched_inbound(conn, phi.org_id, after, INBOUND_BATCH):
        after = rows[-1]["message_id"]
        gone = [r["message_id"] for r in rows if normalise_phone(phi.open(r["from_address"])) in numbers]
        repo.delete_inbound(conn, phi.org_id, gone)
        erased += len(gone)
    return erased
