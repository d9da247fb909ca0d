"""An API token's actions are audited like a staff member's: actor kind `token` with the token's
id, the client address, ids and counts only. Changes are recorded in their own transaction; reads
(search, instance views, listings) through the in-process buffer, flushed in batches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.api import bulk, param_equals, trigger_one
from support.journeys import wait_journey
from support.server import Server, Tenant

from journeys.accounts import audit
from journeys.accounts.audit import Action, ActorKind
from journeys.accounts.audit_buffer import AuditBuffer
from journeys.accounts.service import list_tokens
from journeys.store.db import read_only

PHONE = "+13125550123"
WAIT = wait_journey("Audit wait")


@pytest.fixture()
def tenant(server: Server) -> Tenant:
    return server.tenant(WAIT)


def token_id(server: Server, org_id: str) -> str:
    with read_only(server.engine) as conn:
        [token] = list_tokens(conn, org_id, server.clock.now())
    return token.id


def entries(server: Server, org_id: str) -> list[audit.AuditRecord]:
    server.app.state.audit_buffer.flush()
    with read_only(server.engine) as conn:
        return audit.newest_first(conn, org_id, limit=1000).records


def of(found: list[audit.AuditRecord], action: Action) -> list[audit.AuditEntry]:
    return [r.entry for r in found if r.entry.action is action]


def test_trigger_search_view_cancel_are_audited_as_the_token(server: Server, tenant: Tenant) -> None:
    http = server.http
    instance_id = trigger_one(http, tenant, {})  # a trigger, then a search
    r = http.get(tenant.url(f"/{instance_id}"), headers=tenant.headers)
    assert r.status_code == 200
    r = http.delete(tenant.url(f"/{instance_id}/execution"), headers=tenant.headers)
    assert r.status_code == 204
    found = entries(server, tenant.org_id)
    tid = token_id(server, tenant.org_id)
    for e in (r.entry for r in found):
        assert e.actor_kind is ActorKind.TOKEN and e.actor_id == tid
        assert e.client_address == "127.0.0.1"
    [trig] = of(found, Action.INSTANCES_TRIGGER)
    assert trig.target_kind == "journey" and trig.target_ids == (tenant.journey_id,) and trig.count == 1
    [search] = of(found, Action.INSTANCES_SEARCH)
    assert search.count == 1
    [view] = of(found, Action.INSTANCE_VIEW)
    assert view.target_ids == (instance_id,)
    [cancel] = of(found, Action.INSTANCES_CANCEL)
    assert cancel.target_ids == (instance_id,) and cancel.count == 1
    with read_only(server.engine) as conn:
        assert audit.verify(conn, tenant.org_id).ok


def test_bulk_trigger_and_bulk_cancel_record_counts_not_values(server: Server, tenant: Tenant) -> None:
    http = server.http
    bulk(http, tenant, [{"parameters": {"key": f"k{i}"}} for i in range(3)], timeZone="America/Chicago")
    r = http.post(
        f"/api/orgs/{tenant.org_id}/journeys/{tenant.journey_id}/instances/cancel",
        json={"filterSpecification": param_equals("key", "k1")},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    found = entries(server, tenant.org_id)
    assert [e.count for e in of(found, Action.INSTANCES_TRIGGER)] == [3]
    assert [e.count for e in of(found, Action.INSTANCES_CANCEL)] == [r.json()["cancelled"]]
    text = json.dumps([r.wire() for r in found])
    assert "k1" not in text and "k2" not in text  # parameter values are never recorded


def test_opt_outs_and_replies_are_audited_without_the_phone_number(server: Server, tenant: Tenant) -> None:
    http, base = server.http, f"/api/orgs/{tenant.org_id}"
    assert http.post(f"{base}/opt-outs", json={"phone": PHONE}, headers=tenant.headers).status_code == 201
    assert http.get(f"{base}/opt-outs", headers=tenant.headers).status_code == 200
    assert http.delete(f"{base}/opt-outs/{PHONE}", headers=tenant.headers).status_code == 204
    r = http.post(f"{base}/replies", json={"from": PHONE, "body": "hello there"}, headers=tenant.headers)
    assert r.status_code == 200
    assert http.get(f"{base}/replies", headers=tenant.headers).status_code == 200
    found = entries(server, tenant.org_id)
    assert len(of(found, Action.OPT_OUT_ADD)) == 1 and len(of(found, Action.OPT_OUT_REMOVE)) == 1
    assert [e.count for e in of(found, Action.OPT_OUTS_VIEW)] == [1]
    [reply] = of(found, Action.REPLY_RECEIVE)
    assert reply.target_ids == (r.json()["id"],)
    assert len(of(found, Action.REPLIES_VIEW)) == 1
    text = json.dumps([r.wire() for r in found])
    assert "3125550123" not in text and "hello" not in text


def test_reads_wait_in_the_buffer_and_a_flush_chains_them(server: Server, tenant: Tenant) -> None:
    """A search writes nothing to the database (no chain lock in the request): its entry appears
    when the buffer flushes, one transaction per org, and the chain stays intact."""
    buffer: AuditBuffer = AuditBuffer(server.engine)  # a buffer of the test's own: no flusher thread
    other = server.tenant()
    made: list[Any] = []
    for t in (tenant, other, tenant):
        entry = audit.AuditEntry(
            org_id=t.org_id, at=server.clock.now(), actor_kind=ActorKind.TOKEN,
            actor_id=token_id(server, t.org_id), action=Action.INSTANCES_SEARCH, target_kind="journey",
            target_ids=(t.journey_id,), count=0,
        )  # fmt: skip
        buffer.add(entry)
        made.append(entry)
    before = len(entries(server, tenant.org_id))
    assert buffer.pending() == 3 and len(entries(server, tenant.org_id)) == before
    assert buffer.flush() == 3 and buffer.pending() == 0
    assert len(entries(server, tenant.org_id)) == before + 2
    assert len(entries(server, other.org_id)) == 1
    with read_only(server.engine) as conn:
        assert audit.verify(conn, tenant.org_id).ok and audit.verify(conn, other.org_id).ok


def test_webhook_changes_are_audited_as_the_token(console_server: Server) -> None:
    from support.receivers import WebhookReceiver

    server = console_server  # a server with a secret key (webhook secrets are stored sealed)
    tenant = server.tenant(WAIT)
    rec = WebhookReceiver("whsec-0123456789abcdef")
    try:
        base = f"/api/orgs/{tenant.org_id}/webhooks"
        body = {"url": rec.url, "secret": "whsec-0123456789abcdef", "eventTypes": ["*"]}
        r = server.http.post(base, json=body, headers=tenant.headers)
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        assert server.http.delete(f"{base}/{hook}", headers=tenant.headers).status_code == 204
    finally:
        rec.stop()
    found = entries(server, tenant.org_id)
    tid = token_id(server, tenant.org_id)
    for action in (Action.WEBHOOK_CREATE, Action.WEBHOOK_DELETE):
        [e] = of(found, action)
        assert e.actor_kind is ActorKind.TOKEN and e.actor_id == tid and e.target_ids == (hook,)
