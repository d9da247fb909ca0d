"""The demo: an org, a token and the example journey (each made once), and the requests the tour
sends — two patients booked the day after tomorrow, with new appointment ids on every run so a
second run's requests never collide with the first's still-active instances."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

import journeys.accounts.service as accounts
import journeys.catalog.service as catalog
from journeys.accounts import users
from journeys.accounts.roles import Role
from journeys.accounts.users import UserError
from journeys.definitions.model import JourneyDefinition
from journeys.definitions.values import get_zone
from journeys.engine.rules import next_window_opening
from journeys.store import accounts as accounts_repo

DEMO_ORG = "Demo Clinic"
DEMO_ZONE = "America/Chicago"
JOHN_PHONE = "+15555550100"
DEMO_ADMIN_EMAIL = "admin@demo-clinic.example"


@dataclass(frozen=True)
class DemoSetup:
    org_id: str
    token: str
    journey_id: str
    journey_name: str
    version: int
    run: int  # how many times the demo has been set up with this token (1 the first time)


def ensure_demo(
    conn: Connection, definition: JourneyDefinition, saved_token: str | None, saved_run: int, now: datetime
) -> DemoSetup:
    """The demo org, token and journey: the saved token's if it still works, else made now."""
    principal = accounts.authenticate(conn, saved_token, now) if saved_token else None
    if principal is not None and accounts_repo.get_org(conn, principal.org_id) is not None:
        org_id, token, run = principal.org_id, str(saved_token), saved_run + 1
    else:
        org = accounts_repo.find_org_by_name(conn, DEMO_ORG)
        org_id = org["org_id"] if org else accounts.create_org(conn, DEMO_ORG, now).id
        scopes = [accounts.SCOPE_CREATE, accounts.SCOPE_READ]
        token, run = accounts.create_token(conn, org_id, "demo", scopes, now).token, 1
    existing = [jv for jv in catalog.list_latest(conn, org_id) if jv.name == definition.name]
    jv = existing[0] if existing else catalog.publish(conn, org_id, definition, now)
    return DemoSetup(org_id, token, jv.journey_id, jv.name, jv.version, run)


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    created: bool  # made (or its password reset) now, rather than the saved one still valid


def ensure_demo_admin(conn: Connection, org_id: str, saved_password: str | None, now: datetime) -> DemoLogin:
    """The demo's console admin: made once with a random password (kept beside the demo token);
    if the saved password is lost, a new one is set."""
    try:
        users.get_user(conn, org_id, DEMO_ADMIN_EMAIL)
    except UserError:
        password = saved_password or secrets.token_urlsafe(12)
        users.create_user(conn, org_id, DEMO_ADMIN_EMAIL, Role.ADMIN, password, now)
        return DemoLogin(DEMO_ADMIN_EMAIL, password, True)
    if saved_password:
        return DemoLogin(DEMO_ADMIN_EMAIL, saved_password, False)
    password = secrets.token_urlsafe(12)
    users.reset_password(conn, org_id, DEMO_ADMIN_EMAIL, password, now)
    return DemoLogin(DEMO_ADMIN_EMAIL, password, True)


def demo_day(now: datetime) -> str:
    """The day after tomorrow in the demo's zone, YYYY-MM-DD."""
    zone = get_zone(DEMO_ZONE) or UTC
    return (now.astimezone(zone).date() + timedelta(days=2)).isoformat()


def bulk_body(run: int, now: datetime) -> dict[str, Any]:
    """The tour's trigger: the seed's two patients (John with a phone number), run-unique ids."""
    day = demo_day(now)
    return {
        "flowId": None,
        "timeZone": DEMO_ZONE,
        "instances": [
            {
                "parameters": {
                    "patientId": "100000",
                    "patientName": "John Smith",
                    "appointmentId": f"D{run}-XYZ-11123",
                    "appointmentDateTime": f"{day} 10:00:00",
                    "phoneNumber": JOHN_PHONE,
                }
            },
            {
                "parameters": {
                    "patientId": "100001",
                    "patientName": "Jane Green",
                    "appointmentId": f"D{run}-XBX-11934",
                    "appointmentDateTime": f"{day} 10:30:00",
                }
            },
        ],
    }


def reschedule_body(run: int, now: datetime) -> dict[str, Any]:
    """The tour's reschedule: John's appointment moves a day later, to 11:00 (the subflow)."""
    moved = datetime.fromisoformat(demo_day(now)) + timedelta(days=1)
    return {
        "flowId": "rescheduled",
        "timeZone": DEMO_ZONE,
        "instances": [
            {
                "parameters": {
                    "appointmentId": f"D{run}-XYZ-11123",
                    "appointmentDateTime": f"{moved:%Y-%m-%d} 11:00:00",
                }
            }
        ],
    }


def search_body() -> dict[str, Any]:
    return {
        "filterSpecification": {
            "type": "AndSpecification",
            "specifications": [
                {
                    "type": "JourneyParameterSpecification",
                    "parameterName": "patientName",
                    "operator": "equals",
                    "rightOperand": "John Smith",
                }
            ],
        },
        "includeParameters": True,
    }


@dataclass(frozen=True)
class WindowNow:
    """Where the demo's zone is relative to the journey's send window right now."""

    local: datetime
    start: str
    end: str
    opens_at: datetime | None  # None: open now


def window_now(definition: JourneyDefinition, now: datetime) -> WindowNow | None:
    """None when the journey has no send window."""
    window = definition.send_window
    zone = get_zone(DEMO_ZONE) or UTC
    if window is None:
        return None
    return WindowNow(now.astimezone(zone), window.start, window.end, next_window_opening(now, window, zone))
