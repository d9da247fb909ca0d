"""Inbound SMS and consent: a server that Twilio calls (its own URL is the public one), its
tenants with a Twilio channel, Twilio's signed inbound posts, and what the tables then hold.
Shared by test_consent and test_opt_outs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import sqlalchemy as sa
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from support.api import bulk
from support.journeys import reply_journey
from support.keys import strong_key
from support.server import EXAMPLE, Server, Tenant

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "inbound-test-auth-token"
PHONE = "+13125550100"
OTHER_PHONE = "+13125550177"

TWILIO = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": "+13125550999"}

REPLY = reply_journey()

TWO_SENDS = """
name: Two sends
parameters:
  - {name: key, identifier: true}
  - {name: phone, type: phone}
frequency_cap: null
flows:
  - id: main
    name: Main
    steps:
      - {id: 10, type: send_sms, to: phone, body: "first"}
      - {id: 20, type: wait, duration: 1d}
      - {id: 30, type: send_sms, to: phone, body: "second"}
      - {id: 40, type: end, outcome: done}
"""

class ConsentServer(Server):
    """The support Server with its own database, a secret key, the fake Twilio's API base and
    its own URL as the public one (what Twilio calls and signs)."""

    def __init__(self, database_url: str, twilio_url: str) -> None:
        super().__init__(
            database_url,
            public_url_is_own=True,
            secret_key=strong_key("consent-test-secret"),
            twilio_api_base=twilio_url,
        )

    def tenant(self, definition: str | Path = EXAMPLE, sms_config: dict[str, Any] | None = None) -> Tenant:
        """A fresh org, token and published journey; with `sms_config`, the org's Twilio channel."""
        t = super().tenant(definition)
        if sms_config is not None:
            self.set_channel(t.org_id, "sms", "twilio", sms_config)
        return t

    def another_journey(self, t: Tenant, definition: str) -> Tenant:
        """`definition` published in t's org: the tenant acting on that journey."""
        journey = self.publish(t.org_id, definition)
        return Tenant(t.org_id, t.token, str(journey["id"]), t.headers)

    def rows(self, sql: str, org_id: str, **params: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), {"o": org_id, **params}).all())


def inbound_url(srv: ConsentServer, org_id: str) -> str:
    return f"{srv.base_url}/channels/twilio/{org_id}/inbound"


def form(from_: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,  # Twilio's id of this inbound message
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": "+13125550999",
        "Body": body,
        "NumMedia": "0",
    }


def post_inbound(
    srv: ConsentServer,
    org_id: str,
    from_: str,
    body: str,
    *,
    token: str = AUTH_TOKEN,
    signature: str | None = None,
    sid: str | None = None,
) -> httpx.Response:
    """POST as Twilio does: form-encoded, signed with the auth token over the public URL."""
    params = form(from_, body, sid)
    url = inbound_url(srv, org_id)
    sig = RequestValidator(token).compute_signature(url, params) if signature is None else signature
    headers = {"X-Twilio-Signature": sig} if sig else {}
    return srv.http.post(url, data=params, headers=headers)


def start(srv: ConsentServer, t: Tenant, *params: dict[str, str]) -> list[str]:
    bulk(srv.http, t, [{"parameters": p} for p in params])
    r = srv.http.post(t.url("/search"), json={"includeParameters": True, "take": 1000}, headers=t.headers)
    assert r.status_code == 200, r.text
    by_key = {i["parameters"]["key"]: i["id"] for i in r.json()}
    return [by_key[p["key"]] for p in params]


def events(srv: ConsentServer, t: Tenant, iid: str) -> list[dict[str, Any]]:
    r = srv.http.get(t.url(f"/{iid}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


DELIVERY = {"sms_sent", "sms_retry", "sms_failed", "sms_delivered", "sms_undelivered"}


def kinds(srv: ConsentServer, t: Tenant, iid: str) -> list[tuple[int | None, str]]:
    """The instance's steps (delivery outcomes, recorded when the provider answers, left out)."""
    return [(e["stepId"], e["type"]) for e in events(srv, t, iid) if e["type"] not in DELIVERY]


class Sms(NamedTuple):  # a row, as the query's: by name or as a tuple
    body: str  # opened: the server seals message texts with the org's key
    status: str
    last_error: str | None


def sms_to(srv: ConsentServer, org_id: str, phone: str) -> list[Sms]:
    """The org's SMS to `phone`, opened: the outbox keeps a recipient's blind index (what caps
    and opt-outs match by) and the message sealed with the org's key."""
    phi = srv.worker.vault.org(org_id)
    rows = srv.rows(
        "SELECT body, status, last_error FROM outbox WHERE org_id = :o AND to_address = :p "
        "ORDER BY created_at, message_id",
        org_id,
        p=phi.phone_key(phone),
    )
    return [Sms(phi.open(r.body), r.status, r.last_error) for r in rows]
