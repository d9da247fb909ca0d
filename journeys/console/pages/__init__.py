"""The console's pages, one module per area; each module has a `router`."""

from __future__ import annotations

from fastapi import APIRouter

from journeys.console.pages import (
    admin_audit,
    admin_channels,
    admin_tokens,
    admin_users,
    admin_webhooks,
    journeys,
)

ROUTERS: list[APIRouter] = [
    journeys.router,
    admin_users.router,
    admin_tokens.router,
    admin_audit.router,
    admin_channels.router,
    admin_webhooks.router,
]
