"""Forms that carry a file (or a large pasted text): the role and size are checked before the
body is read, the CSRF token after. Nothing uploaded is stored: the route reads the bytes it
needs from the request and forgets them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from zoneinfo import available_timezones

from fastapi import Request
from starlette.datastructures import UploadFile

from journeys.accounts.roles import Permission
from journeys.console import web
from journeys.errors import Invalid

SLACK = 64 * 1024  # the form's other fields, around the file or text it carries


def size_text(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{max(1, size // 1024)} KB"


def upload_action(
    permission: Permission, max_bytes: int, what: str
) -> Callable[[Request], Awaitable[web.FormAction]]:
    """A dependency for multipart POSTs of at most `max_bytes` (plus the form's other fields):
    a larger body is refused with a clear message (400) before it is read."""
    check_role = web.allowed(permission)

    async def dependency(request: Request) -> web.FormAction:
        staff = await check_role(request)
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            raise Invalid("the form was sent without its length; send it again from the page")
        if int(length) > max_bytes + SLACK:
            raise Invalid(f"{what} is too large: the limit is {size_text(max_bytes)}")
        form = await request.form(max_files=2, max_fields=1000, max_part_size=max_bytes + SLACK)
        web.check_csrf(request, form, staff.csrf)
        return web.FormAction(staff, form)

    return dependency


async def file_bytes(action: web.FormAction, name: str) -> bytes:
    """The uploaded file's bytes (empty when no file was chosen)."""
    upload = action.form.get(name)
    if not isinstance(upload, UploadFile):
        return b""
    data = await upload.read()
    await upload.close()
    return data


def prefixed(action: web.FormAction, prefix: str) -> dict[str, str]:
    """The form's text fields named PREFIX + key, as {key: value}."""
    out: dict[str, str] = {}
    for key, value in action.form.multi_items():
        if key.startswith(prefix) and isinstance(value, str):
            out[key[len(prefix) :]] = value
    return out


@cache
def zones() -> list[str]:
    """The IANA zones offered in a time-zone field's list (any IANA zone may be typed)."""
    return [
        "UTC",
        *sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))),
    ]
