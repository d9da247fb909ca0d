"""What each kind of authentication of a registered API needs (checked before it is sealed)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from journeys.errors import Invalid

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
QUERY_NAME = re.compile(r"^[A-Za-z0-9_.~-]{1,64}$")
DEFAULT_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True, slots=True)
class AuthKind:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.required + self.optional


AUTH_KINDS = {
    "none": AuthKind(()),
    "api_key": AuthKind(("key",), ("header", "query")),
    "basic": AuthKind(("username", "password")),
    "bearer": AuthKind(("token",)),
    "oauth2": AuthKind(("token_url", "client_id", "client_secret"), ("scope",)),
}
SECRETS = frozenset({"key", "password", "token", "client_secret"})  # never shown


class ApiSettingsError(Invalid):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ApiSettingsError(["name: lower-case letters, digits, - and _, from a letter (e.g. ehr)"])
    return name


def check_url(value: str, what: str) -> str:
    """An http(s) URL with a host, no credentials and no fragment; without a trailing slash."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiSettingsError([f"{what}: must be an http:// or https:// URL with a host"])
    if "@" in parts.netloc or parts.fragment:
        raise ApiSettingsError([f"{what}: must not hold credentials or a #fragment (give them as settings)"])
    return value.strip().rstrip("/") if what == "base URL" else value.strip()


def check_settings(auth: str, given: dict[str, str]) -> dict[str, str]:
    """The settings of `auth` (empty values count as not given), or ApiSettingsError naming
    every problem (never quoting a value)."""
    kind = AUTH_KINDS.get(auth)
    if kind is None:
        raise ApiSettingsError([f"auth: must be one of {', '.join(AUTH_KINDS)}"])
    settings = {k.strip(): v.strip() for k, v in given.items() if v.strip()}
    known = kind.required + kind.optional
    expected = ", ".join(known) or "none"
    problems = [f"{k}: unknown setting for {auth} (expected: {expected})" for k in settings if k not in known]
    problems += [f"{k}: required for {auth}" for k in kind.required if k not in settings]
    problems += _kind_problems(auth, settings)
    if problems:
        raise ApiSettingsError(problems)
    return settings


def _kind_problems(auth: str, settings: dict[str, Any]) -> list[str]:
    if auth == "api_key":
        if "header" in settings and "query" in settings:
            return ["header, query: give one (where the key goes)"]
        if "query" in settings and not QUERY_NAME.match(settings["query"]):
            return ["query: must be a query parameter name (letters, digits, _ . ~ -)"]
        if not HEADER_NAME.match(settings.get("header", DEFAULT_KEY_HEADER)):
            return ["header: must be an HTTP header name"]
    if auth == "oauth2" and "token_url" in settings:
        try:
            check_url(settings["token_url"], "token_url")
        except ApiSettingsError as exc:
            return list(exc.messages)
    return []


def shown(settings: dict[str, str]) -> dict[str, str]:
    """The settings as they may be shown: secrets masked."""
    return {k: ("***" if k in SECRETS else v) for k, v in sorted(settings.items())}
