"""What the worker does with a call to a registered API: the API's base URL before the step's
path, and its credentials — an API key, basic, a bearer token, or an OAuth2 access token fetched
with the client credentials grant (RFC 6749 §4.4; the client authenticates with HTTP Basic),
cached until shortly before it expires and fetched again after a 401.

Error texts name the API and a status, never a URL, a credential or a response body."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from msgspec.structs import replace
from sqlalchemy.engine import Engine

from journeys import outbound
from journeys.engine.effects import HttpCall
from journeys.keys.box import SecretBox, SecretKeyMissing
from journeys.registered_apis.settings import DEFAULT_KEY_HEADER
from journeys.store import apis as repo
from journeys.store.db import read_only

TOKEN_MARGIN = 60.0  # seconds before its expiry a cached token is fetched again
DEFAULT_TOKEN_LIFETIME = 3600.0
TOKEN_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires: float  # time.monotonic()


class RegisteredApis:
    """Prepares calls to the orgs' registered APIs (one per worker)."""

    def __init__(self, engine: Engine, box: SecretBox, policy: outbound.OutboundPolicy) -> None:
        self.engine = engine
        self.box = box
        self.policy = policy
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._lock = threading.Lock()

    def prepare(self, org_id: str, call: HttpCall) -> HttpCall | str:
        """The call with the API's base URL and credentials, or why it cannot be made."""
        name = str(call.api)
        with read_only(self.engine) as conn:
            row = repo.get_api(conn, org_id, name)
        if row is None:
            return f"registered API {name} does not exist (journeys api set)"
        try:
            settings: dict[str, Any] = self.box.open(row["config_encrypted"])
        except SecretKeyMissing:
            return f"the credentials of registered API {name} cannot be read with this JOURNEYS_SECRET_KEY"
        url = str(row["base_url"]) + call.url
        headers = dict(call.headers)
        auth = row["auth"]
        if auth == "api_key":
            if "query" in settings:
                url = str(httpx.URL(url).copy_merge_params({settings["query"]: settings["key"]}))
            else:
                headers[settings.get("header", DEFAULT_KEY_HEADER)] = settings["key"]
        elif auth == "basic":
            pair = f"{settings['username']}:{settings['password']}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif auth == "bearer":
            headers["Authorization"] = f"Bearer {settings['token']}"
        elif auth == "oauth2":
            token = self._token(org_id, name, settings)
            if not isinstance(token, _Token):
                return token
            headers["Authorization"] = f"Bearer {token.value}"
        return replace(call, url=url, headers=headers)

    def answered(self, org_id: str, call: HttpCall, status: int | None) -> None:
        """After the call: a 401 means the cached token (if any) is no longer good."""
        if status == 401 and call.api is not None:
            with self._lock:
                self._tokens.pop((org_id, call.api), None)

    def _token(self, org_id: str, name: str, settings: dict[str, Any]) -> _Token | str:
        key = (org_id, name)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached.expires > time.monotonic():
            return cached
        fetched = self._fetch(name, settings)
        if isinstance(fetched, _Token):
            with self._lock:
                self._tokens[key] = fetched
        return fetched

    def _fetch(self, name: str, settings: dict[str, Any]) -> _Token | str:
        failed = f"the token request of registered API {name} failed"
        form = {"grant_type": "client_credentials"}
        if settings.get("scope"):
            form["scope"] = settings["scope"]
        try:
            with outbound.client(self.policy, TOKEN_TIMEOUT) as client:
                response = client.post(
                    settings["token_url"],
                    data=form,
                    auth=(settings["client_id"], settings["client_secret"]),
                    headers={"Accept": "application/json"},
                )
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            return f"{failed}: {outbound.failure_text(exc)}"
        if not 200 <= response.status_code < 300:
            return f"{failed} (HTTP {response.status_code})"
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, KeyError, TypeError):
            return f"{failed}: the answer holds no access_token"
        if not isinstance(value, str) or not value:
            return f"{failed}: the answer holds no access_token"
        return _Token(value, time.monotonic() + max(lifetime - TOKEN_MARGIN, 0.0))
