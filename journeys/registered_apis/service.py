"""Registering an org's APIs, listing and removing them (services; never commit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.accounts import audit
from journeys.accounts.audit import Action, Actor
from journeys.errors import NotFound
from journeys.keys.box import SecretBox
from journeys.registered_apis.settings import check_name, check_settings, check_url
from journeys.store import accounts as accounts_repo
from journeys.store import apis as repo


@dataclass(frozen=True, slots=True)
class RegisteredApi:
    """A registered API as staff see it: never its credentials."""

    org_id: str
    name: str
    base_url: str
    auth: str
    updated_at: datetime


def set_api(
    conn: Connection, actor: Actor, org_id: str, name: str, base_url: str, auth: str,
    given: dict[str, str], box: SecretBox,
) -> RegisteredApi:  # fmt: skip
    """Check, seal and store the API's settings (replacing any it had); audited."""
    name = check_name(name)
    url = check_url(base_url, "base URL")
    settings = check_settings(auth, given)
    sealed = box.seal(settings)  # SecretKeyMissing (400) without JOURNEYS_SECRET_KEY
    if accounts_repo.get_org(conn, org_id) is None:
        raise NotFound(f"unknown org {org_id}")
    repo.set_api(conn, org_id, name, url, auth, sealed, actor.at)
    audit.record(conn, actor.entry(org_id, Action.API_SET, "api", (name,)))
    return RegisteredApi(org_id, name, url, auth, actor.at)


def list_apis(conn: Connection, org_id: str) -> list[RegisteredApi]:
    return [
        RegisteredApi(org_id, r["name"], r["base_url"], r["auth"], r["updated_at"])
        for r in repo.list_apis(conn, org_id)
    ]


def remove_api(conn: Connection, actor: Actor, org_id: str, name: str) -> None:
    if not repo.remove_api(conn, org_id, name):
        raise NotFound(f"org {org_id} has no registered API {name}")
    audit.record(conn, actor.entry(org_id, Action.API_REMOVE, "api", (name,)))
