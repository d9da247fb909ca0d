"""journeys-client (client/) against a real journeys server over real HTTP, on the suite's
database: every call, sync and async; bulk chunking, paging, errors carrying the server's array,
retries on 429 honouring Retry-After, a MedChat-only client, and webhook signatures checked on a
real delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from journeys_client import (
    AsyncClient,
    BadRequest,
    BulkInterrupted,
    Client,
    NewInstance,
    NotAvailable,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unauthorized,
    verify_signature,
)
from journeys_client.filters import all_of, param, status
from support.databases import own_database
from support.keys import strong_key
from support.receivers import WebhookReceiver
from support.server import Server, Tenant

HOOK_SECRET = "client-hook-secret-0123456789"


@pytest.fixture(scope="module")
def srv(database_url: str) -> Iterator[Server]:
    s = Server(database_url, secret_key=strong_key("journeys-client"))  # webhooks' secrets are sealed
    yield s
    s.stop()


@pytest.fixture()
def tenant(srv: Server) -> Tenant:
    return srv.tenant()


@pytest.fixture()
def client(srv: Server, tenant: Tenant) -> Iterator[Client]:
    with Client(srv.base_url, tenant.token, tenant.org_id) as c:
        yield c


def patients(n: int, prefix: str = "A") -> list[dict[str, str]]:
    return [
        {
            "patientId": f"{prefix}{i}",
            "patientName": f"Patient {prefix}{i}",
            "appointmentId": f"{prefix}-APPT-{i}",
            "appointmentDateTime": "2030-12-01 09:00:00",
        }
        for i in range(n)
    ]


def test_trigger_in_chunks_then_page_through_a_search(client: Client, tenant: Tenant) -> None:
    [journey] = client.journeys()
    assert journey.id == tenant.journey_id and any(f.main for f in journey.flows)
    result = client.trigger(tenant.journey_id, patients(7), time_zone="America/Chicago", chunk_size=3)
    assert (result.triggered, result.requests, result.chunk_sizes) == (7, 3, (3, 3, 1))
    found = list(client.search(tenant.journey_id, status("InProgress"), page_size=2))
    assert len(found) == 7 and len({i.id for i in found}) == 7
    assert all(i.parameters is not None and i.status == "InProgress" for i in found)
    assert found == sorted(found, key=lambda i: i.created_at, reverse=True)
    assert len(list(client.search(tenant.journey_id, page_size=2, limit=3))) == 3
    [john] = client.search(tenant.journey_id, all_of(param("patientId").equals("A3"), status("InProgress")))
    detail = client.instance(tenant.journey_id, john.id)
    assert detail.parameters == {**patients(7)[3]} and detail.events[0].type == "started"
    client.cancel(tenant.journey_id, john.id)
    assert client.instance(tenant.journey_id, john.id).status == "Cancelled"
    would = client.cancel_matching(tenant.journey_id, param("patientId").is_in(["A1", "A2"]), dry_run=True)
    assert (would.would_cancel, would.cancelled) == (2, None)
    assert client.cancel_matching(tenant.journey_id, all=True).cancelled == 6


def test_subflows_go_through_trigger_too(client: Client, tenant: Tenant) -> None:
    client.trigger(tenant.journey_id, [NewInstance(patients(1, "S")[0])], time_zone="America/Chicago")
    moved = {"appointmentId": "S-APPT-0", "appointmentDateTime": "2030-12-02 10:00:00"}
    client.trigger(tenant.journey_id, [moved], time_zone="America/Chicago", flow_id="rescheduled")
    [inst] = client.search(tenant.journey_id, param("appointmentId").equals("S-APPT-0"))
    assert inst.parameters is not None and inst.parameters["appointmentDateTime"] == "2030-12-02 10:00:00"


def test_errors_carry_the_servers_messages(srv: Server, client: Client, tenant: Tenant) -> None:
    bad = [{**patients(1)[0], "appointmentDateTime": "someday"}]
    with pytest.raises(BadRequest) as caught:
        client.trigger(tenant.journey_id, bad, time_zone="America/Chicago")
    assert caught.value.status == 400
    assert caught.value.messages == [
        'instances[0].parameters.appointmentDateTime: "someday" is not a valid datetime '
        "(use 'YYYY-MM-DD HH:MM:SS' or ISO 8601 with an offset)"
    ]
    # a later chunk failing: the first ones were started, and the error says how many
    mixed = [*patients(3, "M"), {**patients(1, "X")[0], "appointmentDateTime": "never"}]
    with pytest.raises(BulkInterrupted) as interrupted:
        client.trigger(tenant.journey_id, mixed, time_zone="America/Chicago", chunk_size=3)
    assert interrupted.value.triggered == 3 and isinstance(interrupted.value.cause, BadRequest)
    with pytest.raises(NotFound):
        client.instance(tenant.journey_id, "no-such-instance")
    with (
        Client(srv.base_url, "jny_not-a-token", tenant.org_id) as wrong,
        pytest.raises(Unauthorized) as denied,
    ):
        wrong.journeys()
    assert denied.value.messages == ["invalid, expired or revoked token"]


def test_replies_opt_outs_and_webhooks(srv: Server, client: Client, tenant: Tenant) -> None:
    reply = client.reply("+15555550123", "C")
    assert reply.matched is False and reply.instance_id is None
    assert [r.id for r in client.replies(unmatched=True)][:1] == [reply.id]
    opt = client.add_opt_out("+15555550124", "asked by phone")
    assert opt.opted_out and [o.phone for o in client.opt_outs(phone="+15555550124")] == ["+15555550124"]
    client.remove_opt_out("+15555550124")
    assert (
        client.opt_outs(phone="+15555550124") == [] or not client.opt_outs(phone="+15555550124")[0].opted_out
    )
    receiver = WebhookReceiver(HOOK_SECRET)
    try:
        hook = client.create_webhook(receiver.url, HOOK_SECRET, ["instance.started"])
        assert hook.verified and [h.id for h in client.webhooks()] == [hook.id]
        client.trigger(tenant.journey_id, patients(1, "W"), time_zone="America/Chicago")
        srv.run_worker()  # delivers the event
        [post] = [p for p in receiver.posts if not p["failed"]]
        header = post["headers"]["X-Journeys-Signature"]
        assert verify_signature(HOOK_SECRET, header, post["raw"], now=srv.clock.now().timestamp())
        assert not verify_signature(
            "another-secret-123456", header, post["raw"], now=srv.clock.now().timestamp()
        )
        assert not verify_signature(HOOK_SECRET, header, post["raw"] + b" ", now=srv.clock.now().timestamp())
        [delivery] = client.deliveries(hook.id)
        assert delivery.status == "delivered" and delivery.type == "instance.started"
        client.delete_webhook(hook.id)
        assert client.webhooks() == []
    finally:
        receiver.stop()


def test_verify_signature_refuses_old_and_malformed_headers() -> None:
    import hashlib
    import hmac

    body = b'{"id": "1"}'
    t = 1_800_000_000
    good = (
        f"t={t},v1=" + hmac.new(b"s3cret-s3cret-s3cret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    )
    assert verify_signature("s3cret-s3cret-s3cret", good, body, now=t + 299)
    assert not verify_signature("s3cret-s3cret-s3cret", good, body, now=t + 301)  # outside the window
    for header in ("", "t=abc,v1=00", "v1=00", f"t={t}", "garbage"):
        assert not verify_signature("s3cret-s3cret-s3cret", header, body, now=t)


def test_the_async_client(srv: Server, tenant: Tenant) -> None:
    async def run() -> tuple[int, list[str], str]:
        async with AsyncClient(srv.base_url, tenant.token, tenant.org_id) as c:
            result = await c.trigger(
                tenant.journey_id, patients(5, "Y"), time_zone="America/Chicago", chunk_size=2
            )
            ids = [i.id async for i in c.search(tenant.journey_id, page_size=2)]
            detail = await c.instance(tenant.journey_id, ids[0])
            await c.cancel(tenant.journey_id, ids[0])
            with pytest.raises(BadRequest):
                await c.trigger(tenant.journey_id, [{"nope": "x"}], time_zone="UTC")
            return result.triggered, ids, (await c.instance(tenant.journey_id, detail.id)).status

    triggered, ids, cancelled = asyncio.run(run())
    assert triggered == 5 and len(ids) == 5 and cancelled == "Cancelled"


def test_a_medchat_only_client_never_calls_an_extension(srv: Server, tenant: Tenant) -> None:
    sent: list[str] = []
    with Client(srv.base_url, tenant.token, tenant.org_id, extensions=False) as c:
        c.http.event_hooks["request"].append(lambda r: sent.append(f"{r.method} {r.url.path}"))
        c.trigger(tenant.journey_id, patients(2, "C"), time_zone="America/Chicago")
        assert len(list(c.search(tenant.journey_id))) == 2
        with pytest.raises(NotAvailable):
            c.cancel_matching(tenant.journey_id, all=True)
        with pytest.raises(NotAvailable):
            c.replies()
    assert all(path.split()[1].startswith("/chatbotapi/external/") for path in sent), sent


def test_429_is_retried_after_the_servers_retry_after(tmp_path: Path) -> None:
    with own_database(tmp_path) as url:  # a server of its own: its own limits, no other test's channels
        _retried_after(Server(url, rate_limit_token_per_second=1, rate_limit_token_burst=2))


def _retried_after(limited: Server) -> None:
    try:
        t = limited.tenant()
        answers: list[tuple[int, str | None]] = []

        def seen(r: httpx.Response) -> None:
            answers.append((r.status_code, r.headers.get("retry-after")))
            if r.status_code == 429:  # the server's clock is a manual one: time passes as the client waits
                limited.clock.advance(timedelta(seconds=float(r.headers["retry-after"])))

        with Client(limited.base_url, t.token, t.org_id, retry=RetryPolicy(retries=3)) as c:
            c.http.event_hooks["response"].append(seen)
            started = time.monotonic()
            for _ in range(4):
                c.journeys()
            waited = time.monotonic() - started
        statuses = [s for s, _ in answers]
        assert statuses.count(200) == 4 and 429 in statuses
        retry_afters = [float(h) for s, h in answers if s == 429 and h is not None]
        assert retry_afters and waited >= min(retry_afters) * 0.9  # it waited as told
        with Client(limited.base_url, t.token, t.org_id, retry=RetryPolicy(retries=0)) as impatient:
            with pytest.raises(RateLimited) as caught:
                for _ in range(5):
                    impatient.journeys()
        assert caught.value.retry_after is not None and caught.value.status == 429
    finally:
        limited.stop()


def test_bad_arguments_are_refused_before_any_request(client: Client, tenant: Tenant) -> None:
    for size in (0, 10_001):
        with pytest.raises(ValueError, match="chunk_size must be between 1 and 10000"):
            client.trigger(tenant.journey_id, patients(1), chunk_size=size)
