"""Auth, org isolation, the journeys list and versioning, over real HTTP.

Issue ("Auth"): bearer tokens created by the CLI: random, high-entropy, stored only as a hash,
bound to one org, with scopes and an optional expiry, revocable, last-used time recorded.
`create.journey_instances` for bulk and cancel, `read.journey_instances` for search and get.
Missing/invalid/expired/revoked token → 401 (`WWW-Authenticate: Bearer`); valid token without
the scope → 403; a token of another org, or an unknown chatBotId → 404 (don't reveal other orgs).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from httpx import Client, Response
from support.api import SEED_BULK_BODY, SEED_SEARCH_BODY, trigger_one
from support.server import Server, Tenant

import journeys.accounts.service as accounts
from journeys.store.db import transaction
from journeys.store.tables import api_tokens, outbox

CREATE = "create.journey_instances"
READ = "read.journey_instances"
MISSING = ["missing bearer token (Authorization: Bearer <token>)"]
INVALID = ["invalid, expired or revoked token"]
ROUTES = ("bulk", "search", "get", "cancel", "list")
INSTANCE_ROUTES = ("bulk", "search", "get", "cancel")  # the ones under a chatBotId


# ---------------------------------------------------------------- helpers
def fresh_bulk_body() -> dict[str, Any]:
    """One instance of the example journey with an identifier no other test uses."""
    return {
        "flowId": None,
        "timeZone": "America/Chicago",
        "instances": [
            {
                "parameters": {
                    "patientId": "200000",
                    "patientName": "Auth Probe",
                    "appointmentId": f"AUTH-{uuid.uuid4().hex}",
                    "appointmentDateTime": "2027-01-15 09:00:00",
                }
            }
        ],
    }


def route(name: str, org_id: str, journey_id: str, instance_id: str) -> tuple[str, str, Any]:
    base = f"/chatbotapi/external/orgs/{org_id}/journeys"
    inst = f"{base}/{journey_id}/instances"
    table: dict[str, tuple[str, str, Any]] = {
        "bulk": ("POST", f"{inst}/bulk", fresh_bulk_body()),
        "search": ("POST", f"{inst}/search", SEED_SEARCH_BODY),
        "get": ("GET", f"{inst}/{instance_id}", None),
        "cancel": ("DELETE", f"{inst}/{instance_id}/execution", None),
        "list": ("GET", base, None),
    }
    return table[name]


def call(
    http: Client,
    name: str,
    org_id: str,
    journey_id: str,
    instance_id: str,
    headers: dict[str, str] | None,
) -> Response:
    method, url, body = route(name, org_id, journey_id, instance_id)
    return http.request(method, url, json=body, headers=headers or {})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seeded(server: Server, http: Client) -> tuple[Tenant, str]:
    """A fresh tenant whose journey has the seed's two instances; returns John Smith's id."""
    t = server.tenant()
    r = http.post(t.url("/bulk"), json=SEED_BULK_BODY, headers=t.headers)
    assert r.status_code == 204, r.text
    r = http.post(t.url("/search"), json=SEED_SEARCH_BODY, headers=t.headers)
    assert r.status_code == 200, r.text
    found = r.json()
    assert len(found) == 1
    return t, str(found[0]["id"])


def status_of(http: Client, t: Tenant, instance_id: str) -> str:
    r = http.get(t.url(f"/{instance_id}"), headers=t.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def assert_401(r: Response, body: list[str]) -> None:
    assert r.status_code == 401, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == body


def assert_nothing_changed(server: Server, http: Client, t: Tenant, instance_id: str) -> None:
    """A rejected request wrote nothing and cancelled nothing."""
    assert server.count("journey_instances", t.org_id) == 2
    assert status_of(http, t, instance_id) == "InProgress"


def token_row(server: Server, secret: str) -> dict[str, Any]:
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    with server.engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == digest)).mappings().one()
    return dict(row)


def normalised(r: Response, *ids: str) -> tuple[int, Any]:
    text = r.text
    for value in ids:
        text = text.replace(value, "<id>")
    return r.status_code, text


# ---------------------------------------------------------------- 401
def test_no_authorization_header_is_401_on_every_route(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    for name in ROUTES:
        assert_401(call(http, name, t.org_id, t.journey_id, iid, None), MISSING)
    assert_nothing_changed(server, http, t, iid)


@pytest.mark.parametrize(
    "header",
    ["Basic xyz", "Bearer", "Token abc", ""],
    ids=["basic", "bearer-empty", "other-scheme", "empty"],
)
def test_malformed_authorization_header_is_401(server: Server, http: Client, header: str) -> None:
    t, iid = seeded(server, http)
    for name in ROUTES:
        r = call(http, name, t.org_id, t.journey_id, iid, {"Authorization": header})
        assert_401(r, MISSING)
    assert_nothing_changed(server, http, t, iid)


def test_valid_secret_under_another_scheme_is_401(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    for name in ROUTES:
        r = call(http, name, t.org_id, t.journey_id, iid, {"Authorization": f"Basic {t.token}"})
        assert_401(r, MISSING)
    assert_nothing_changed(server, http, t, iid)


def test_bearer_scheme_is_case_insensitive(server: Server, http: Client) -> None:
    # RFC 7235: the auth scheme is case-insensitive.
    t, iid = seeded(server, http)
    r = call(http, "get", t.org_id, t.journey_id, iid, {"Authorization": f"bearer {t.token}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "token",
    [
        accounts.TOKEN_PREFIX + secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        accounts.TOKEN_PREFIX + "x" * 500,
    ],
    ids=["prefixed", "unprefixed", "overlong"],
)
def test_unknown_token_is_401(server: Server, http: Client, token: str) -> None:
    t, iid = seeded(server, http)
    for name in ROUTES:
        assert_401(call(http, name, t.org_id, t.journey_id, iid, bearer(token)), INVALID)
    assert_nothing_changed(server, http, t, iid)


def test_token_with_one_character_changed_is_401(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    last = t.token[-1]
    tampered = t.token[:-1] + ("A" if last != "A" else "B")
    for name in ROUTES:
        assert_401(call(http, name, t.org_id, t.journey_id, iid, bearer(tampered)), INVALID)
    assert_nothing_changed(server, http, t, iid)


def test_expired_token_is_401(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    token = server.new_token(t.org_id, [CREATE, READ], expires_in_days=1)
    # Valid before it expires.
    for name in ("search", "get", "list"):
        r = call(http, name, t.org_id, t.journey_id, iid, bearer(token))
        assert r.status_code == 200, (name, r.text)
    server.clock.advance(timedelta(days=2))  # only ever forward: other tests share the clock
    for name in ROUTES:
        assert_401(call(http, name, t.org_id, t.journey_id, iid, bearer(token)), INVALID)
    assert_nothing_changed(server, http, t, iid)
    # A token without expiry, created at the same time, still works.
    r = call(http, "list", t.org_id, t.journey_id, iid, t.headers)
    assert r.status_code == 200


def test_revoked_token_is_401(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    token = server.new_token(t.org_id, [CREATE, READ])
    r = call(http, "get", t.org_id, t.journey_id, iid, bearer(token))
    assert r.status_code == 200, r.text
    token_id = token_row(server, token)["token_id"]
    with transaction(server.engine) as conn:
        accounts.revoke_token(conn, token_id, server.clock.now())
    for name in ROUTES:
        assert_401(call(http, name, t.org_id, t.journey_id, iid, bearer(token)), INVALID)
    assert_nothing_changed(server, http, t, iid)
    assert token_row(server, token)["revoked_at"] == server.clock.now()
    # Revoking one token leaves the org's other tokens working.
    r = call(http, "get", t.org_id, t.journey_id, iid, t.headers)
    assert r.status_code == 200


# ---------------------------------------------------------------- 403
def test_read_only_token(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    headers = bearer(server.new_token(t.org_id, [READ]))
    for name in ("bulk", "cancel"):
        r = call(http, name, t.org_id, t.journey_id, iid, headers)
        assert r.status_code == 403, (name, r.text)
        assert r.json() == [f"this token lacks the {CREATE} scope"]
    assert_nothing_changed(server, http, t, iid)
    for name in ("search", "get", "list"):
        r = call(http, name, t.org_id, t.journey_id, iid, headers)
        assert r.status_code == 200, (name, r.text)
    r = call(http, "search", t.org_id, t.journey_id, iid, headers)
    assert [i["id"] for i in r.json()] == [iid]
    r = call(http, "get", t.org_id, t.journey_id, iid, headers)
    assert r.json()["id"] == iid
    r = call(http, "list", t.org_id, t.journey_id, iid, headers)
    assert [j["id"] for j in r.json()] == [t.journey_id]


def test_create_only_token(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    headers = bearer(server.new_token(t.org_id, [CREATE]))
    for name in ("search", "get", "list"):
        r = call(http, name, t.org_id, t.journey_id, iid, headers)
        assert r.status_code == 403, (name, r.text)
        assert r.json() == [f"this token lacks the {READ} scope"]
    r = call(http, "bulk", t.org_id, t.journey_id, iid, headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert server.count("journey_instances", t.org_id) == 3
    r = call(http, "cancel", t.org_id, t.journey_id, iid, headers)
    assert r.status_code == 204, r.text
    assert status_of(http, t, iid) == "Cancelled"


# ---------------------------------------------------------------- 404: other orgs
def test_other_orgs_token_is_404_on_every_route_and_reveals_nothing(server: Server, http: Client) -> None:
    a, a_iid = seeded(server, http)
    b, b_iid = seeded(server, http)
    unknown_org = str(uuid.uuid4())
    for name in ROUTES:
        r = call(http, name, a.org_id, a.journey_id, a_iid, b.headers)
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert "www-authenticate" not in r.headers
        body = r.json()
        assert isinstance(body, list) and body and all(isinstance(m, str) for m in body)
        for secret_of_b in (b.org_id, b.journey_id, b_iid, b.token):
            assert secret_of_b not in r.text
        # Indistinguishable from an org that does not exist at all: A's existence is not revealed.
        r_unknown = call(http, name, unknown_org, a.journey_id, a_iid, b.headers)
        assert normalised(r, a.org_id) == normalised(r_unknown, unknown_org), name
    # Nothing happened to A's data.
    assert_nothing_changed(server, http, a, a_iid)
    assert server.count("journey_instances", b.org_id) == 2


def test_unknown_org_in_path_with_a_valid_token_of_another_org_is_404(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    unknown_org = str(uuid.uuid4())
    for name in ROUTES:
        r = call(http, name, unknown_org, t.journey_id, iid, t.headers)
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert r.json() == [f"org {unknown_org} not found"]
        assert t.org_id not in r.text
    assert_nothing_changed(server, http, t, iid)


def test_other_orgs_token_without_the_scope_is_404_not_403(server: Server, http: Client) -> None:
    a, a_iid = seeded(server, http)
    b_org = server.new_org("Other Clinic")
    b_read = bearer(server.new_token(b_org, [READ]))
    b_create = bearer(server.new_token(b_org, [CREATE]))
    for name in ("bulk", "cancel"):
        r = call(http, name, a.org_id, a.journey_id, a_iid, b_read)
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert r.json() == [f"org {a.org_id} not found"]
    for name in ("search", "get", "list"):
        r = call(http, name, a.org_id, a.journey_id, a_iid, b_create)
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert r.json() == [f"org {a.org_id} not found"]
    assert_nothing_changed(server, http, a, a_iid)


def test_unknown_chatbotid_is_404(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    other = server.tenant()  # a journey that exists, but in another org
    unknown = str(uuid.uuid4())
    for name in INSTANCE_ROUTES:
        r = call(http, name, t.org_id, unknown, iid, t.headers)
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert r.json() == [f"journey {unknown} not found"]
        # Another org's chatBotId is answered exactly like one that does not exist.
        r_other = call(http, name, t.org_id, other.journey_id, iid, t.headers)
        assert normalised(r_other, other.journey_id) == normalised(r, unknown), name
        assert other.org_id not in r_other.text
    assert_nothing_changed(server, http, t, iid)
    assert server.count("journey_instances", other.org_id) == 0


def test_unknown_instance_id_is_404(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    unknown = str(uuid.uuid4())
    for name in ("get", "cancel"):
        r = call(http, name, t.org_id, t.journey_id, unknown, t.headers)
        assert r.status_code == 404, (name, r.text)
        assert r.json() == [f"instance {unknown} not found"]
    assert_nothing_changed(server, http, t, iid)


# ---------------------------------------------------------------- token storage
def test_tokens_are_stored_only_as_a_sha256_hash(server: Server, http: Client) -> None:
    org = server.new_org("Hash Clinic")
    secret_a = server.new_token(org, [CREATE, READ])
    secret_b = server.new_token(org, [READ], expires_in_days=30)
    assert secret_a != secret_b
    for secret in (secret_a, secret_b):
        assert len(secret) >= 40  # 256 random bits, url-safe base64, plus a prefix
    # Use them once, so last_used_at is filled in too.
    for secret in (secret_a, secret_b):
        r = http.get(f"/chatbotapi/external/orgs/{org}/journeys", headers=bearer(secret))
        assert r.status_code == 200, r.text
        assert r.json() == []
    with server.engine.connect() as conn:
        rows = [
            dict(r) for r in conn.execute(sa.select(api_tokens).where(api_tokens.c.org_id == org)).mappings()
        ]
    assert len(rows) == 2
    for row in rows:
        for column, value in row.items():
            for secret in (secret_a, secret_b):
                assert secret not in str(value), column
                assert secret.removeprefix(accounts.TOKEN_PREFIX) not in str(value), column
    hashes = {row["token_hash"] for row in rows}
    assert hashes == {hashlib.sha256(s.encode("utf-8")).hexdigest() for s in (secret_a, secret_b)}
    by_hash = {row["token_hash"]: row for row in rows}
    assert by_hash[hashlib.sha256(secret_a.encode()).hexdigest()]["scopes"].split() == [CREATE, READ]
    row_b = by_hash[hashlib.sha256(secret_b.encode()).hexdigest()]
    assert row_b["scopes"].split() == [READ]
    assert row_b["expires_at"] == row_b["created_at"] + timedelta(days=30)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda conn, org, now: accounts.create_org(conn, "Clinic\x00", now), "org name must not contain"),
        (lambda conn, org, now: accounts.create_org(conn, "x" * 201, now), "org name must be at most 200"),
        (
            lambda conn, org, now: accounts.create_token(conn, org, "t\x00", [accounts.SCOPE_READ], now),
            "token name must not contain NUL",
        ),
        (
            lambda conn, org, now: accounts.create_token(conn, org + "\x00", "t", [accounts.SCOPE_READ], now),
            "unknown org",
        ),
        (
            lambda conn, org, now: accounts.create_token(conn, org, "t", [accounts.SCOPE_READ], now, 10**9),
            "--expires-in-days must be a number of days from 1 to 36500",
        ),
    ],
)
def test_org_and_token_names_and_expiry_are_checked_before_anything_is_stored(
    server: Server, call: Any, message: str
) -> None:
    """What the CLI passes on (NUL cannot come through argv, but the services are the guard):
    PostgreSQL cannot store NUL, and a far expiry overflowed."""
    org = server.new_org()
    with pytest.raises(accounts.AccountError, match=message.replace("(", r"\(")):
        with transaction(server.engine) as conn:
            call(conn, org, server.clock.now())
    assert server.count("api_tokens", org) == 0


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/orgs/{org}/webhooks", "GET, POST"),
        ("PATCH", "/api/orgs/{org}/replies", "GET, POST"),
        ("PUT", "/api/orgs/{org}/webhooks/w1", "DELETE"),
        ("DELETE", "/api/orgs/{org}/webhooks/w1/deliveries", "GET"),
        # `bulk` and `search` are also what …/instances/{journeyInstanceId} matches.
        ("PUT", "{instances}/search", "GET, POST"),
        ("DELETE", "{instances}/bulk", "GET, POST"),
        ("POST", "{instances}/abc", "GET"),
        ("GET", "{instances}/abc/execution", "DELETE"),
        ("DELETE", "/chatbotapi/external/orgs/{org}/journeys", "GET"),
        ("HEAD", "{instances}/abc", "GET"),
        ("POST", "/docs", "GET"),  # Swagger UI from the package (journeys.api.docs)
    ],
)
def test_405_allow_lists_every_method_the_path_has(
    server: Server, http: Client, method: str, path: str, allow: str
) -> None:
    t = server.tenant()
    url = path.format(org=t.org_id, instances=t.url())
    r = http.request(method, url, headers=t.headers)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    if method != "HEAD":
        assert r.json() == ["Method Not Allowed"]
    for other in allow.split(", "):  # every method named is really served there
        assert http.request(other, url, headers=t.headers).status_code != 405


def test_last_used_time_is_recorded(server: Server, http: Client) -> None:
    t, iid = seeded(server, http)
    token = server.new_token(t.org_id, [READ])
    assert token_row(server, token)["last_used_at"] is None
    now = server.clock.now()
    r = call(http, "get", t.org_id, t.journey_id, iid, bearer(token))
    assert r.status_code == 200, r.text
    assert token_row(server, token)["last_used_at"] == now
    # A later use moves it forward.
    later = server.clock.advance(timedelta(hours=1))
    r = call(http, "search", t.org_id, t.journey_id, iid, bearer(token))
    assert r.status_code == 200, r.text
    assert token_row(server, token)["last_used_at"] == later


# ---------------------------------------------------------------- org isolation end to end
def test_org_isolation_end_to_end(server: Server, http: Client) -> None:
    a = server.tenant()
    b = server.tenant()
    assert a.journey_id != b.journey_id
    r = http.post(a.url("/bulk"), json=SEED_BULK_BODY, headers=a.headers)
    assert r.status_code == 204, r.text
    r = http.post(b.url("/search"), json=SEED_SEARCH_BODY, headers=b.headers)
    assert r.status_code == 200, r.text
    assert r.json() == []
    assert server.count("journey_instances", b.org_id) == 0
    # The same identifiers (appointmentId) in another org: no conflict.
    r = http.post(b.url("/bulk"), json=SEED_BULK_BODY, headers=b.headers)
    assert r.status_code == 204, r.text
    assert server.count("journey_instances", a.org_id) == 2
    assert server.count("journey_instances", b.org_id) == 2
    ra = http.post(a.url("/search"), json=SEED_SEARCH_BODY, headers=a.headers).json()
    rb = http.post(b.url("/search"), json=SEED_SEARCH_BODY, headers=b.headers).json()
    assert len(ra) == 1 and len(rb) == 1
    a_iid, b_iid = ra[0]["id"], rb[0]["id"]
    assert a_iid != b_iid
    assert ra[0]["journeyBatchId"] != rb[0]["journeyBatchId"]
    # A cannot reach B's instance through A's own journey.
    r = http.get(a.url(f"/{b_iid}"), headers=a.headers)
    assert r.status_code == 404, r.text
    assert r.json() == [f"instance {b_iid} not found"]
    r = http.delete(a.url(f"/{b_iid}/execution"), headers=a.headers)
    assert r.status_code == 404, r.text
    assert status_of(http, b, b_iid) == "InProgress"
    # Nor through B's journey id under A's org.
    r = http.get(
        f"/chatbotapi/external/orgs/{a.org_id}/journeys/{b.journey_id}/instances/{b_iid}", headers=a.headers
    )
    assert r.status_code == 404, r.text
    # Cancelling in A leaves B's instance with the same identifiers alone.
    r = http.delete(a.url(f"/{a_iid}/execution"), headers=a.headers)
    assert r.status_code == 204, r.text
    assert status_of(http, a, a_iid) == "Cancelled"
    assert status_of(http, b, b_iid) == "InProgress"


# ---------------------------------------------------------------- journeys list
EXPECTED_FLOWS = [
    {"id": "main", "name": "Main Flow", "main": True},
    {"id": "rescheduled", "name": "Appointment Rescheduled", "main": False},
]
EXPECTED_PARAMETERS = [
    {"name": "patientId", "type": "string", "required": True, "identifier": False},
    {"name": "patientName", "type": "string", "required": True, "identifier": False},
    {"name": "appointmentId", "type": "string", "required": True, "identifier": True},
    {"name": "appointmentDateTime", "type": "datetime", "required": True, "identifier": False},
    {"name": "phoneNumber", "type": "phone", "required": False, "identifier": False},
]


def test_list_journeys(server: Server, http: Client) -> None:
    a = server.tenant()
    b = server.tenant()
    list_a = f"/chatbotapi/external/orgs/{a.org_id}/journeys"
    r = http.get(list_a, headers=a.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == [
        {
            "id": a.journey_id,
            "name": "Appointment Reminder",
            "version": 1,
            "flows": EXPECTED_FLOWS,
            "parameters": EXPECTED_PARAMETERS,
        }
    ]
    published = server.publish(a.org_id)
    assert published["id"] == a.journey_id
    assert published["version"] == 2
    assert server.count("journeys", a.org_id) == 1
    assert server.count("journey_versions", a.org_id) == 2
    r = http.get(list_a, headers=a.headers)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {
            "id": a.journey_id,
            "name": "Appointment Reminder",
            "version": 2,
            "flows": EXPECTED_FLOWS,
            "parameters": EXPECTED_PARAMETERS,
        }
    ]
    # B sees only its own journey, still at version 1.
    r = http.get(f"/chatbotapi/external/orgs/{b.org_id}/journeys", headers=b.headers)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [(j["id"], j["version"]) for j in listed] == [(b.journey_id, 1)]
    assert a.journey_id not in r.text
    # A fresh org with no journeys lists nothing.
    empty = server.new_org("Empty Clinic")
    r = http.get(f"/chatbotapi/external/orgs/{empty}/journeys", headers=bearer(server.new_token(empty)))
    assert r.status_code == 200, r.text
    assert r.json() == []


# ---------------------------------------------------------------- versioning
def greeting(version_word: str, flow_name: str) -> str:
    return f"""
name: Versioned Greeting
frequency_cap: null  # both versions text the same test number on the same day
parameters:
  - name: ref
    type: string
    identifier: true
  - name: phone
    type: phone
flows:
  - id: main
    name: {flow_name}
    main: true
    steps:
      - id: 10
        type: send_sms
        to: phone
        body: "Hello {{{{ ref }}}}, this is version {version_word}."
      - id: 20
        type: end
"""


def trigger_ref(http: Client, t: Tenant, ref: str) -> str:
    return trigger_one(http, t, {"phone": "+15555550100"}, key="ref", value=ref, time_zone="UTC")


def outbox_bodies(server: Server, org_id: str, instance_id: str) -> list[str]:
    with server.engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.c.body).where(outbox.c.org_id == org_id, outbox.c.instance_id == instance_id)
        ).all()
    return [str(r[0]) for r in rows]


def test_running_instances_stay_on_the_version_they_started_on(server: Server, http: Client) -> None:
    t = server.tenant(greeting("one", "Main Flow"))
    first = trigger_ref(http, t, "r1")
    v2 = server.publish(t.org_id, greeting("two", "Main Flow Two"))
    assert v2["id"] == t.journey_id
    assert v2["version"] == 2
    server.run_worker()
    assert outbox_bodies(server, t.org_id, first) == ["Hello r1, this is version one."]
    r = http.get(t.url(f"/{first}"), headers=t.headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "Completed"
    assert got["lastStepExecuted"]["flowName"] == "Main Flow"  # v1's flow name
    # A trigger after version 2 was published runs version 2.
    second = trigger_ref(http, t, "r2")
    server.run_worker()
    assert outbox_bodies(server, t.org_id, second) == ["Hello r2, this is version two."]
    r = http.get(t.url(f"/{second}"), headers=t.headers)
    assert r.json()["lastStepExecuted"]["flowName"] == "Main Flow Two"
    assert server.count("outbox", t.org_id) == 2
