"""The delivery providers an org can configure per channel."""

from __future__ import annotations

import importlib
from typing import Any

from journeys.config import Settings
from journeys.errors import Invalid
from journeys.messaging.providers.base import Provider

# provider name -> (module, channels it serves)
PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "twilio": ("journeys.messaging.providers.twilio", ("sms",)),
    "smtp": ("journeys.messaging.providers.smtp", ("email",)),
}


class ProviderConfigError(Invalid):
    pass


def check_config(provider: str, channel: str, config: dict[str, Any]) -> dict[str, Any]:
    """Validate a provider configuration; returns it normalised. Raises ProviderConfigError."""
    if provider not in PROVIDERS:
        raise ProviderConfigError(f"unknown provider {provider!r} (known: {', '.join(PROVIDERS)})")
    module, channels = PROVIDERS[provider]
    if channel not in channels:
        raise ProviderConfigError(f"provider {provider} serves {', '.join(channels)}, not {channel}")
    return importlib.import_module(module).check_config(config)  # type: ignore[no-any-return]


def build(provider: str, config: dict[str, Any], settings: Settings) -> Provider:
    module, _ = PROVIDERS[provider]
    return importlib.import_module(module).build(config, settings)  # type: ignore[no-any-return]
