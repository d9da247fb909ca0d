"""The console's pages, one module per area; each module has a `router`."""

from __future__ import annotations

from fastapi import APIRouter

from journeys.console.pages import design, instances, journeys, messages, opt_outs, replies, start

ROUTERS: list[APIRouter] = [
    journeys.router,
    instances.router,
    messages.router,
    replies.router,
    opt_outs.router,
    design.router,
    start.router,
]
