"""Admin › Channels: the org's delivery provider per channel (its non-secret settings only),
set (Twilio for sms, SMTP for email) and remove, through journeys.messaging.channel_admin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts.roles import Permission
from journeys.config import Settings
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.errors import NotFound
from journeys.keys.box import SecretBox
from journeys.messaging import channel_admin
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX + "/admin")
CHANNELS = web.PREFIX + "/admin/channels"
FIELDS = {
    "twilio": ("account_sid", "auth_token", "from"),
    "smtp": ("host", "port", "security", "username", "password", "from_address"),
}
NOTICES = {"set": "The provider was saved.", "removed": "The provider was removed."}


def _box(request: Request) -> SecretBox:
    settings: Settings = request.app.state.settings
    return settings.secret_box()


@router.get("/channels", include_in_schema=False)
async def channels_page(
    request: Request, staff: Staff = Depends(web.allowed(Permission.MANAGE_CHANNELS))
) -> Response:
    box = _box(request)

    def load() -> list[channel_admin.ConfiguredChannel]:
        with read_only(request.app.state.engine) as conn:
            return channel_admin.list_configured(conn, staff.org_id, box)

    found = await run_in_threadpool(load)
    return web.render(
        request, "admin/channels.html", staff=staff, configured=found, has_key=box.available,
        notice=NOTICES.get(request.query_params.get("done", "")),
    )  # fmt: skip


@router.post("/channels/{provider}", include_in_schema=False)
async def set_channel(
    request: Request, provider: str, action: FormAction = Depends(web.form_action(Permission.MANAGE_CHANNELS))
) -> Response:
    if provider not in FIELDS:
        raise NotFound(f"no provider {provider}")
    config: dict[str, Any] = {key: action.text(key) for key in FIELDS[provider]}
    actor, box = web.actor(request, action.staff), _box(request)

    def save() -> None:
        with transaction(request.app.state.engine) as conn:
            channel_admin.set_channel(conn, action.staff.org_id, actor, provider, config, box)

    await run_in_threadpool(save)
    return RedirectResponse(f"{CHANNELS}?done=set", status_code=303)


@router.post("/channels/{channel}/remove", include_in_schema=False)
async def remove_channel(
    request: Request, channel: str, action: FormAction = Depends(web.form_action(Permission.MANAGE_CHANNELS))
) -> Response:
    actor = web.actor(request, action.staff)

    def remove() -> None:
        with transaction(request.app.state.engine) as conn:
            channel_admin.remove_channel(conn, action.staff.org_id, actor, channel)

    await run_in_threadpool(remove)
    return RedirectResponse(f"{CHANNELS}?done=removed", status_code=303)
