"""Configuration from `JOURNEYS_*` environment variables, read when the app is built."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_", extra="ignore")

    database_url: str = "sqlite:///./journeys.db"
    host: str = "127.0.0.1"
    port: int = 8080

    # API limits
    max_bulk_instances: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    search_default_take: int = Field(default=100, ge=1)
    search_max_take: int = Field(default=1_000, ge=1)
    # PostgreSQL: ANALYZE journey_instances after a bulk load that grew it by more than 20 %.
    analyze_after_bulk: bool = True

    # Worker
    worker_enabled: bool = True
    worker_batch_size: int = Field(default=200, ge=1)
    worker_poll_interval: float = Field(default=1.0, gt=0)
    worker_lease_seconds: float = Field(default=30.0, ge=1)

    # Database pool (PostgreSQL)
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)

    # Operations: log lines as text or one JSON object per line; /readyz; /metrics.
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    ready_timeout: float = Field(default=2.0, gt=0, le=60)
    metrics_token: str | None = Field(default=None, min_length=16)

    # Channels: provider credentials are encrypted with a key derived from this secret.
    secret_key: str | None = None
    public_base_url: str | None = Field(
        default=None, description="This server's public URL, for provider status callbacks"
    )
    twilio_api_base: str = "https://api.twilio.com"
    default_phone_region: str = "US"
    send_batch_size: int = Field(default=50, ge=1)
