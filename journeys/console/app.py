"""Installs the console on the app: its routers, its assets (shipped in the package: the console
works without internet), its HTML error pages and its security headers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from journeys.accounts.roles import Permission
from journeys.console import login, web
from journeys.console.web import LoginRequired, Staff

STATIC = Path(__file__).resolve().parent / "static"

# No inline script or style anywhere in the console: the policy allows our own files only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = [  # with journeys.api.guard's for every response (nosniff, frame deny, HSTS under TLS)
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")  # pages hold patient data: never cached

home = APIRouter(prefix=web.PREFIX)


@home.get("", include_in_schema=False)
@home.get("/", include_in_schema=False)
async def start(staff: Staff = Depends(web.allowed(Permission.READ))) -> Response:
    return RedirectResponse(f"{web.PREFIX}/journeys", status_code=303)


class SecurityHeaders:
    """Adds the console's security headers to every /console response (pages, redirects, assets)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == web.PREFIX or path.startswith(web.PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        asset = path.startswith(web.PREFIX + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(HEADERS)
                if not asset:
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def login_redirect(request: Request, exc: LoginRequired) -> Response:
    target = f"{web.PREFIX}/login?next={quote(exc.next_url, safe='')}" + ("&ended=1" if exc.ended else "")
    if request.headers.get("hx-request"):  # htmx: the whole page goes to the login
        return Response(status_code=204, headers={"HX-Redirect": target})
    response = RedirectResponse(target, status_code=303)
    if exc.ended:
        response.delete_cookie(web.COOKIE, path=web.PREFIX)
    return response


def error_page(
    request: Request, status: int, messages: list[str], headers: dict[str, str] | None
) -> Response:
    """A console error as a page (the API's routes answer JSON arrays: journeys.api.errors)."""
    return web.render(
        request, "error.html", status=status, headers=headers, status_code=status, messages=messages
    )


def install(app: FastAPI) -> list[APIRouter]:
    from journeys.console import pages

    routers = [login.router, home, *pages.ROUTERS]
    for router in routers:
        app.include_router(router)
    app.mount(f"{web.PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(LoginRequired, login_redirect)  # type: ignore[arg-type]
    app.state.html_error = error_page
    app.add_middleware(SecurityHeaders)
    return routers
