"""The audit log: who did what, append-only and tamper-evident.

Each org has one chain: entry N carries the hash of entry N-1 (`prev_hash`) and its own hash,
SHA-256 over the previous hash and the entry's canonical JSON. Changing, removing or reordering
an entry breaks the chain from there on, and `verify` finds the first broken link. Appends to one
org's chain are serialised (journeys.store.audit.lock_head), so concurrent writers cannot fork it.

An entry holds ids and counts only — never parameter values, names, phone numbers or message
text: `AuditEntry` refuses anything that does not look like an id."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import Connection

from journeys.clock import iso_z
from journeys.store import audit as repo

GENESIS = "0" * 64
MAX_TARGET_IDS = 100
BATCH = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$")
_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")


class ActorKind(StrEnum):
    USER = "user"  # a staff user (console)
    TOKEN = "token"  # an API token
    CLI = "cli"  # the command line (its id: the operating-system user that ran it)
    FEED = "feed"  # a provider's callback or another automated feed


class Action(StrEnum):
    # accounts
    ORG_CREATE = "org.create"
    USER_CREATE = "user.create"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_SET_ROLE = "user.set_role"
    USER_TOTP_REMOVE = "user.totp_remove"
    USER_RESET_PASSWORD = "user.reset_password"
    USER_TOTP_ENROL = "user.totp_enrol"
    ORG_REQUIRE_TOTP = "org.require_totp"
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGOUT = "auth.logout"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    # patient outreach
    INSTANCE_VIEW = "instance.view"
    INSTANCES_SEARCH = "instances.search"
    INSTANCES_TRIGGER = "instances.trigger"
    INSTANCES_CANCEL = "instances.cancel"
    INSTANCES_SUBFLOW = "instances.subflow"  # a subflow triggered on existing instances
    MESSAGES_VIEW = "messages.view"
    REPLY_RECEIVE = "reply.receive"
    REPLY_HANDLED = "reply.handled"
    REPLIES_VIEW = "replies.view"  # the console's replies inbox
    OPT_OUT_ADD = "optout.add"
    OPT_OUT_REMOVE = "optout.remove"
    OPT_OUTS_VIEW = "optouts.view"  # the console's list of opted-out numbers
    JOURNEY_PUBLISH = "journey.publish"
    CHANNEL_SET = "channel.set"
    CHANNEL_REMOVE = "channel.remove"
    API_SET = "api.set"  # a registered API's settings (never its credentials)
    API_REMOVE = "api.remove"
    FEED_SET = "feed.set"  # a FHIR feed's mapping stored (journeys fhir set)
    FEED_REMOVE = "feed.remove"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_RETRY = "webhook.retry"
    AUDIT_EXPORT = "audit.export"
    # patient data's life (journeys.lifecycle)
    PATIENT_ERASE = "patient.erase"  # one patient's data erased on request
    RETENTION_PURGE = "retention.purge"  # ended instances reduced to tombstones by hand
    ORG_RETENTION = "org.retention"  # the org's retention changed


class AuditError(ValueError):
    """An entry that cannot be recorded as given (something that is not an id, a bad address)."""


def is_id(text: str) -> bool:
    """Whether `text` looks like an id (what entries hold)."""
    return bool(_ID.match(text))


def _check_id(what: str, value: str) -> None:
    if not _ID.match(value):
        raise AuditError(f"{what} must be an id (letters, digits, . _ : @ + -; at most 64 characters)")


@dataclass(frozen=True)
class AuditEntry:
    org_id: str
    at: datetime
    actor_kind: ActorKind
    actor_id: str | None
    action: Action
    target_kind: str | None = None
    target_ids: tuple[str, ...] = ()
    count: int | None = None
    client_address: str | None = None

    def __post_init__(self) -> None:
        _check_id("org_id", self.org_id)
        if self.at.tzinfo is None:
            raise AuditError("at must be an aware datetime")
        ActorKind(self.actor_kind)
        Action(self.action)
        if self.actor_id is not None:
            _check_id("actor_id", self.actor_id)
        if self.target_kind is not None and not _KIND.match(self.target_kind):
            raise AuditError("target_kind must be a lower-case name")
        if len(self.target_ids) > MAX_TARGET_IDS:
            raise AuditError(f"at most {MAX_TARGET_IDS} target ids (record a count for more)")
        for target in self.target_ids:
            _check_id("each target id", target)
        if self.count is not None and self.count < 0:
            raise AuditError("count must not be negative")
        if self.client_address is not None:
            try:
                ipaddress.ip_address(self.client_address)
            except ValueError:
                raise AuditError("client_address must be an IP address") from None


@dataclass(frozen=True)
class Actor:
    """Who makes a change, when, and from where: it makes the change's audit entry."""

    kind: ActorKind
    id: str | None
    at: datetime
    client_address: str | None = None

    def entry(
        self,
        org_id: str,
        action: Action,
        target_kind: str | None = None,
        target_ids: tuple[str, ...] = (),
        count: int | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            org_id=org_id,
            at=self.at,
            actor_kind=self.kind,
            actor_id=self.id,
            action=action,
            target_kind=target_kind,
            target_ids=target_ids[:MAX_TARGET_IDS],
            count=count,
            client_address=self.client_address,
        )


@dataclass(frozen=True)
class AuditRecord:
    """A stored entry with its place in the chain."""

    entry: AuditEntry
    seq: int
    prev_hash: str
    hash: str

    def wire(self) -> dict[str, Any]:
        e = self.entry
        return {
            "orgId": e.org_id,
            "seq": self.seq,
            "at": iso_z(e.at),
            "actor": {"kind": e.actor_kind.value, "id": e.actor_id},
            "action": e.action.value,
            "target": {"kind": e.target_kind, "ids": list(e.target_ids)},
            "count": e.count,
            "clientAddress": e.client_address,
            "prevHash": self.prev_hash,
            "hash": self.hash,
        }


def canonical(org_id: str, seq: int, row: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers (besides the previous hash): sorted, compact JSON."""
    body = {"org": org_id, "seq": seq, **row}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _fields(
    at: datetime,
    actor_kind: str,
    actor_id: str | None,
    action: str,
    target_kind: str | None,
    target_ids: list[str],
    count: int | None,
    client_address: str | None,
) -> dict[str, Any]:
    return {
        "at": iso_z(at),
        "actor": [actor_kind, actor_id],
        "action": action,
        "target": [target_kind, target_ids],
        "count": count,
        "client": client_address,
    }


def chain_hash(prev_hash: str, org_id: str, seq: int, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(org_id, seq, fields)).hexdigest()


def record(conn: Connection, entry: AuditEntry) -> AuditRecord:
    """Append an entry to its org's chain (in the caller's transaction: it commits with the change
    it records, or not at all). Holds the org's chain lock until the transaction ends."""
    return record_many(conn, [entry])[0]


def record_many(conn: Connection, entries: list[AuditEntry]) -> list[AuditRecord]:
    """Append entries of one org to its chain, in order: the head locked once, one insert for
    all (the audit buffer's flush; `record` for one)."""
    if not entries:
        return []
    org_id = entries[0].org_id
    if any(entry.org_id != org_id for entry in entries):
        raise ValueError("record_many: entries of one org only")
    last_seq, prev_hash = repo.lock_head(conn, org_id, GENESIS)
    records: list[AuditRecord] = []
    rows: list[repo.AuditRow] = []
    for entry in entries:
        seq = last_seq + 1 + len(rows)
        record, row = _chained(entry, seq, prev_hash)
        records.append(record)
        rows.append(row)
        prev_hash = record.hash
    repo.append_many(conn, rows)
    return records


def _chained(entry: AuditEntry, seq: int, prev_hash: str) -> tuple[AuditRecord, repo.AuditRow]:
    ids = list(entry.target_ids)
    fields = _fields(
        entry.at, entry.actor_kind.value, entry.actor_id, entry.action.value,
        entry.target_kind, ids, entry.count, entry.client_address,
    )  # fmt: skip
    digest = chain_hash(prev_hash, entry.org_id, seq, fields)
    row = repo.AuditRow(
        org_id=entry.org_id,
        seq=seq,
        at=entry.at,
        actor_kind=entry.actor_kind.value,
        actor_id=entry.actor_id,
        action=entry.action.value,
        target_kind=entry.target_kind,
        target_ids=json.dumps(ids, separators=(",", ":")),
        count=entry.count,
        client_address=entry.client_address,
        prev_hash=prev_hash,
        hash=digest,
    )
    return AuditRecord(entry, seq, prev_hash, digest), row


def _row_hash(row: repo.AuditRow) -> str:
    try:
        ids = json.loads(row.target_ids)
    except ValueError:
        ids = row.target_ids
    fields = _fields(
        row.at, row.actor_kind, row.actor_id, row.action, row.target_kind, ids, row.count, row.client_address
    )
    return chain_hash(row.prev_hash, row.org_id, row.seq, fields)


def _entry(row: repo.AuditRow) -> AuditRecord:
    entry = AuditEntry(
        org_id=row.org_id,
        at=row.at,
        actor_kind=ActorKind(row.actor_kind),
        actor_id=row.actor_id,
        action=Action(row.action),
        target_kind=row.target_kind,
        target_ids=tuple(json.loads(row.target_ids)),
        count=row.count,
        client_address=row.client_address,
    )
    return AuditRecord(entry, row.seq, row.prev_hash, row.hash)


def export(conn: Connection, org_id: str, since: datetime | None = None) -> Iterator[AuditRecord]:
    """The org's entries in order (those at or after `since`), read in batches."""
    after = 0
    while True:
        rows = repo.entries(conn, org_id, after, BATCH, since)
        for row in rows:
            yield _entry(row)
        if len(rows) < BATCH:
            return
        after = rows[-1].seq


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]  # newest first
    older: int | None  # the `before` of the next (older) page, None at the oldest


def newest_first(
    conn: Connection,
    org_id: str,
    limit: int = 50,
    before: int | None = None,
    action: Action | None = None,
    actor_id: str | None = None,
) -> AuditPage:
    """One page of the org's log, newest first (entries before seq `before`), optionally of one
    action and/or one actor."""
    rows = repo.newest_first(conn, org_id, limit + 1, before, action.value if action else None, actor_id)
    records = [_entry(row) for row in rows[:limit]]
    return AuditPage(records, records[-1].seq if len(rows) > limit and records else None)


@dataclass(frozen=True)
class Verification:
    checked: int  # entries whose links held
    broken_seq: int | None = None  # the first entry whose link is broken
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def verify(conn: Connection, org_id: str) -> Verification:
    """Walk the org's chain from its first entry: every seq in order, each entry's prev_hash the
    previous entry's hash, each hash recomputed from the entry, and the chain's head (the last seq
    and hash) matching its last entry (entries removed at the end are found too)."""
    head = repo.get_head(conn, org_id) or (0, GENESIS)
    expected_seq, prev = 1, GENESIS
    while expected_seq <= head[0]:
        rows = repo.entries(conn, org_id, expected_seq - 1, min(BATCH, head[0] - expected_seq + 1))
        if not rows:
            break
        for row in rows:
            problem = _link_problem(row, expected_seq, prev)
            if problem:
                return Verification(expected_seq - 1, expected_seq, problem)
            expected_seq, prev = expected_seq + 1, row.hash
    if expected_seq - 1 != head[0] or prev != head[1]:
        return Verification(
            expected_seq - 1, expected_seq, f"entry {expected_seq} is missing (the chain's head is {head[0]})"
        )
    return Verification(head[0])


def _link_problem(row: repo.AuditRow, expected_seq: int, prev: str) -> str | None:
    if row.seq != expected_seq:
        return f"entry {expected_seq} is missing (the next one is {row.seq})"
    if row.prev_hash != prev:
        return f"entry {row.seq} does not follow entry {row.seq - 1} (its prev_hash differs)"
    if _row_hash(row) != row.hash:
        return f"entry {row.seq} was changed (its hash does not match its content)"
    return None
