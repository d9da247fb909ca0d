"""A small real HTTP server speaking Twilio's Messages API, for tests.

    with FakeTwilio(account_sid, auth_token) as fake:
        settings.twilio_api_base = fake.url
        fake.fail_next(1, status=500)           # or status=429, retry_after=120
        fake.reject_next(1, status=400, code=21211)
        fake.sleep_next(1, seconds=2.0)         # make the client time out
        ...
        fake.requests                           # every request: path, headers, form

It checks basic auth (401, code 20003), the form (To in E.164, From or MessagingServiceSid,
a non-empty Body: 400 with codes 21211 / 21603 / 21602) and answers 201 with a Message
resource whose sid is "SM" + 32 hex digits.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from journeys.messaging.providers.twilio import check_config
from support.net import POLL_INTERVAL_S

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def twilio_config(account_sid: str, auth_token: str, from_: str) -> dict[str, Any]:
    """An org's checked Twilio channel config (what `journeys channel set` stores, sealed)."""
    return dict(check_config({"account_sid": account_sid, "auth_token": auth_token, "from": from_}))


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    response_status: int = 0
    sid: str | None = None


@dataclass
class _Plan:
    status: int
    code: int | None = None
    retry_after: int | None = None
    sleep: float = 0.0


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    requests: list[Recorded] = field(default_factory=list)
    # Status callbacks this fake made itself (call_back_first): (sid, status, our answer's code).
    callbacks: list[tuple[str, str, int]] = field(default_factory=list)
    _plans: list[_Plan] = field(default_factory=list)
    _call_back_first: dict[str, str] = field(default_factory=dict)  # org id -> status
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(404, {"code": 20404, "message": "not found", "status": 404})

            def _reply(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, daemon=True
        )

    # ------------------------------------------------------------------ control
    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.callbacks.clear()
            self._plans.clear()
            self._call_back_first.clear()

    def call_back_first(self, status: str, org_id: str) -> None:
        """The next accepted message of `org_id` (its StatusCallback URL names the org) gets its
        (signed) status callback `status` posted to that URL before the send is answered — as
        Twilio may, for a fast failure. Keyed by org, so that a request still in flight from an
        earlier test cannot take it."""
        with self._lock:
            self._call_back_first[org_id] = status

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: int | None = None) -> None:
        """The next `n` requests get `status` (e.g. 500, or 429 with a Retry-After)."""
        code = 20429 if status == 429 else 20500
        with self._lock:
            self._plans.extend(_Plan(status, code, retry_after) for _ in range(n))

    def reject_next(self, n: int = 1, *, status: int = 400, code: int = 21211) -> None:
        """The next `n` requests get a Twilio error (e.g. 400 / 21211)."""
        with self._lock:
            self._plans.extend(_Plan(status, code) for _ in range(n))

    def sleep_next(self, n: int = 1, *, seconds: float = 2.0) -> None:
        """The next `n` requests are answered (201) only after `seconds`."""
        with self._lock:
            self._plans.extend(_Plan(201, sleep=seconds) for _ in range(n))

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    # ------------------------------------------------------------------ the API
    def _handle(self, h: Any) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode("utf-8") if length else ""
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        rec = Recorded("POST", h.path, {k: v for k, v in h.headers.items()}, form)
        with self._lock:
            self.requests.append(rec)
            plan = self._plans.pop(0) if self._plans else None
        status, body, headers = self._answer(h, form, plan)
        rec.response_status = status
        rec.sid = body.get("sid")
        h._reply(status, body, headers)

    def _answer(
        self, h: Any, form: dict[str, str], plan: _Plan | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        def error(status: int, code: int, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
            info = f"https://www.twilio.com/docs/errors/{code}"
            return status, {"code": code, "message": message, "more_info": info, "status": status}, {}

        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if h.headers.get("Authorization") != expected:
            return error(401, 20003, "Authenticate")
        if h.path != self.messages_path:
            return error(404, 20404, "The requested resource was not found")
        if plan is not None and plan.sleep:
            time.sleep(plan.sleep)
        elif plan is not None:
            status, body, headers = error(plan.status, plan.code or 20500, "planned failure")
            if plan.retry_after is not None:
                headers = {"Retry-After": str(plan.retry_after)}
            return status, body, headers
        to = form.get("To", "")
        if not E164.match(to):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not form.get("Body"):
            return error(400, 21602, "Message body is required.")
        sid = "SM" + uuid.uuid4().hex
        url = form.get("StatusCallback", "")
        with self._lock:
            org = next((o for o in self._call_back_first if f"/twilio/{o}/" in url), None)
            early = self._call_back_first.pop(org) if org is not None else None
        if early is not None:
            params = {"MessageSid": sid, "MessageStatus": early, "AccountSid": self.account_sid, "To": to}
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
            answer = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
            self.callbacks.append((sid, early, answer.status_code))
        return (
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
            {},
        )
