"""The seed's own example requests, verbatim, end to end."""

from __future__ import annotations

from httpx import Client
from support.api import SEED_BULK_BODY, SEED_SEARCH_BODY
from support.server import Server, Tenant


def test_seed_bulk_then_search_then_cancel(server: Server, http: Client, tenant: Tenant) -> None:
    r = http.post(tenant.url("/bulk"), json=SEED_BULK_BODY, headers=tenant.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = http.post(tenant.url("/search"), json=SEED_SEARCH_BODY, headers=tenant.headers)
    assert r.status_code == 200, r.text
    found = r.json()
    assert len(found) == 1
    inst = found[0]
    assert set(inst) == {
        "id",
        "journeyBotName",
        "createdDateTime",
        "startDateTime",
        "journeyBatchId",
        "status",
        "lastStepExecuted",
        "parameters",
    }
    assert inst["journeyBotName"] == "Appointment Reminder"
    assert inst["status"] == "InProgress"
    assert inst["lastStepExecuted"] is None
    assert inst["parameters"]["patientName"] == "John Smith"
    assert inst["createdDateTime"].endswith("Z")
    r = http.delete(tenant.url(f"/{inst['id']}/execution"), headers=tenant.headers)
    assert r.status_code == 204
    server.run_worker()
    r = http.get(tenant.url(f"/{inst['id']}"), headers=tenant.headers)
    assert r.json()["status"] == "Cancelled"
