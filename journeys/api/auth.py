"""Bearer-token authentication and scope checks (FastAPI dependencies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

import journeys.accounts.service as accounts
from journeys.accounts.service import Principal
from journeys.api.openapi import BEARER_SCHEME
from journeys.errors import Forbidden, NotFound, Unauthorized
from journeys.store.db import read_only, transaction

REALM = "journeys"
# Declares the bearer scheme in the OpenAPI document (so Swagger UI's Authorize sends the token);
# never answers by itself: the header is judged below, so that every malformed form gets our 401.
_BEARER = HTTPBearer(
    scheme_name=BEARER_SCHEME,
    description="An API token from `journeys token create`: Authorization: Bearer <token>",
    auto_error=False,
)


def _authenticate_sync(request: Request, token: str) -> Principal | None:
    state = request.app.state
    now = state.clock.now()
    with read_only(state.engine) as conn:
        principal = accounts.authenticate(conn, token, now)
    if principal is not None and principal.last_use_stale:
        try:
            with transaction(state.engine) as conn:
                accounts.record_use(conn, principal, now)
        except Exception:  # recording last use is best effort; never fail the request for it
            pass
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a valid token of the path's org that carries `scope`.

    Order: no/invalid token → 401; a token of another org → 404 (other orgs are not revealed);
    missing scope → 403."""

    async def dependency(
        request: Request,
        orgId: str,  # noqa: N803 (path name)
        _declared: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)", realm=REALM)
        principal = await run_in_threadpool(_authenticate_sync, request, token.strip())
        if principal is None:
            raise Unauthorized("invalid, expired or revoked token", realm=REALM, error="invalid_token")
        if principal.org_id != orgId:
            raise NotFound(f"org {orgId} not found")
        if scope not in principal.scopes:
            raise Forbidden(f"this token lacks the {scope} scope")
        return principal

    return dependency
