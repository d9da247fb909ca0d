"""The console's pages, one module per area; each module has a `router`."""

from __future__ import annotations

from fastapi import APIRouter

from journeys.console.pages import (
    admin_apis,
    admin_audit,
    admin_channels,
    admin_tokens,
    admin_users,
    admin_webhooks,
    design,
    instances,
    journeys,
    messages,
    opt_outs,
    replies,
    start,
)

ROUTERS: list[APIRouter] = [
    journeys.router,
    instances.router,
    messages.router,
    replies.router,
    opt_outs.router,
    design.router,
    start.router,
    admin_users.router,
    admin_tokens.router,
    admin_audit.router,
    admin_apis.router,
    admin_channels.router,
    admin_webhooks.router,
]
