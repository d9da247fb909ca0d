"""Admin › Registered APIs: the clinic systems the org's http_request steps call by name, with
their base URL and kind of authentication (never their credentials); register or replace one,
and remove one, through journeys.registered_apis.service."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from journeys.accounts.roles import Permission
from journeys.config import Settings
from journeys.console import web
from journeys.console.web import FormAction, Staff
from journeys.registered_apis import service
from journeys.registered_apis.settings import AUTH_KINDS
from journeys.store.db import read_only, transaction

router = APIRouter(prefix=web.PREFIX + "/admin")
APIS = web.PREFIX + "/admin/apis"
SETTINGS = ("key", "header", "query", "username", "password", "token", "token_url", "client_id",
            "client_secret", "scope")  # fmt: skip
NOTICES = {"set": "The API was saved.", "removed": "The API was removed."}


@router.get("/apis", include_in_schema=False)
async def apis_page(
    request: Request, staff: Staff = Depends(web.allowed(Permission.MANAGE_APIS))
) -> Response:
    settings: Settings = request.app.state.settings

    def load() -> list[service.RegisteredApi]:
        with read_only(request.app.state.engine) as conn:
            return service.list_apis(conn, staff.org_id)

    found = await run_in_threadpool(load)
    return web.render(
        request, "admin/apis.html", staff=staff, apis=found, kinds=list(AUTH_KINDS),
        has_key=settings.secret_box().available, notice=NOTICES.get(request.query_params.get("done", "")),
    )  # fmt: skip


@router.post("/apis", include_in_schema=False)
async def set_api(
    request: Request, action: FormAction = Depends(web.form_action(Permission.MANAGE_APIS))
) -> Response:
    settings: Settings = request.app.state.settings
    actor, box = web.actor(request, action.staff), settings.secret_box()
    auth = action.text("auth")
    wanted = AUTH_KINDS.get(auth, AUTH_KINDS["none"]).names  # the other kinds' fields are not sent on
    given = {key: action.text(key) for key in SETTINGS if key in wanted}
    name, base_url = action.text("name").strip(), action.text("base_url")

    def save() -> None:
        with transaction(request.app.state.engine) as conn:
            service.set_api(conn, actor, action.staff.org_id, name, base_url, auth, given, box)

    await run_in_threadpool(save)
    return RedirectResponse(f"{APIS}?done=set", status_code=303)


@router.post("/apis/{name}/remove", include_in_schema=False)
async def remove_api(
    request: Request, name: str, action: FormAction = Depends(web.form_action(Permission.MANAGE_APIS))
) -> Response:
    actor = web.actor(request, action.staff)

    def remove() -> None:
        with transaction(request.app.state.engine) as conn:
            service.remove_api(conn, actor, action.staff.org_id, name)

    await run_in_threadpool(remove)
    return RedirectResponse(f"{APIS}?done=removed", status_code=303)
