"""Configuration from `JOURNEYS_*` environment variables, read when the app is built."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine

from journeys.clock import SystemClock
from journeys.keys.box import SecretBox
from journeys.keys.envelope import LocalKeyProvider
from journeys.keys.material import WeakSecretKey, secret_bytes
from journeys.keys.phi import Vault
from journeys.limits import LimitSettings, Rate
from journeys.outbound import OutboundPolicy

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def read_key_file(path: str) -> str:
    """The secret key kept in the file at `path`, or ValueError saying why it cannot be read
    (never quoting what the file holds)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEYS_", extra="ignore")

    database_url: str = "sqlite:///./journeys.db"
    host: str = "127.0.0.1"
    port: int = 8080

    # API limits
    max_bulk_instances: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Twilio's form posts (inbound messages, status callbacks) are small: a 1,600-character body
    # and Twilio's other fields fit easily. Checked while the body streams in, before the signature.
    max_twilio_body_bytes: int = Field(default=64 * 1024, ge=1024)
    search_default_take: int = Field(default=100, ge=1)
    search_max_take: int = Field(default=1_000, ge=1)
    cancel_chunk_size: int = Field(default=10_000, ge=1)  # instances per transaction of a bulk cancel
    # PostgreSQL: ANALYZE journey_instances after a bulk load that grew it by more than 20 %.
    analyze_after_bulk: bool = True

    # Worker
    worker_enabled: bool = True
    worker_batch_size: int = Field(default=200, ge=1)
    worker_poll_interval: float = Field(default=1.0, gt=0)
    worker_lease_seconds: float = Field(default=30.0, ge=1)

    # Retention (journeys.lifecycle.retention): ended instances keep their patient data this many
    # days (unless their org or journey says otherwise), then the worker reduces them to
    # tombstones, at most `retention_batch_size` each sweep, a sweep every `retention_sweep_seconds`.
    retention_days: int = Field(default=365, ge=1, le=36_500)
    retention_purge: bool = True
    retention_sweep_seconds: float = Field(default=3600, gt=0)
    retention_batch_size: int = Field(default=500, ge=1)

    # Database pool (PostgreSQL)
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)

    # Operations: log lines as text or one JSON object per line; /readyz; /metrics.
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    ready_timeout: float = Field(default=2.0, gt=0, le=60)
    metrics_token: str | None = Field(default=None, min_length=16)

    # Tests and demos only: every clock of the process reads the real time shifted by this many
    # seconds (e.g. to see what a journey does at 03:30 or tomorrow). Processes given the same
    # offset agree on the time.
    clock_offset_seconds: float = 0.0

    # The staff console (/console): session timeouts (HIPAA automatic logoff) and the login throttle
    # per client address (on top of each account's lockout after 5 failures).
    console_idle_minutes: float = Field(default=15, gt=0, le=24 * 60)
    console_session_hours: float = Field(default=12, gt=0, le=7 * 24)
    console_login_attempts: int = Field(default=20, ge=1)  # failed logins per address per window
    console_login_window_seconds: int = Field(default=300, ge=1)

    # Abuse resistance (journeys.api.limits): requests per client address and per API token
    # (a token bucket: the rate on average, the burst at once), and failed authentications per
    # address in a window; over any of them, 429 with Retry-After. Per server process.
    rate_limits: bool = True
    rate_limit_address_per_second: float = Field(default=500, gt=0)
    rate_limit_address_burst: int = Field(default=5_000, ge=1)
    rate_limit_token_per_second: float = Field(default=500, gt=0)
    rate_limit_token_burst: int = Field(default=5_000, ge=1)
    auth_failure_limit: int = Field(default=20, ge=1)  # failed authentications per address ...
    auth_failure_window_seconds: float = Field(default=60, gt=0)  # ... in this many seconds
    # A request whose body has not arrived this long after its headers gets 408.
    request_body_timeout_seconds: float = Field(default=120, gt=0)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.strip().upper()

    # Channels: provider credentials are encrypted with a key derived from this secret (HKDF);
    # at least 32 random bytes (journeys.keys.material says which forms are read).
    secret_key: str | None = None
    public_base_url: str | None = Field(
        default=None, description="This server's public URL, for provider status callbacks"
    )
    twilio_api_base: str = "https://api.twilio.com"
    default_phone_region: str = "US"
    send_batch_size: int = Field(default=50, ge=1)

    # The secret key kept in a file instead (e.g. a container secret, or `make run`'s demo key in
    # .demo/secret-key): its content, surrounding blanks ignored. Not both.
    secret_key_file: str | None = None

    # After a rotation, the keys in use before (comma-separated), kept until `journeys keys
    # rotate` has moved everything to the current one: only read with, never sealed with.
    previous_secret_keys: str | None = None

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        secret_bytes(value)  # raises WeakSecretKey (a ValueError) saying why, never quoting it
        return value

    @field_validator("secret_key_file")
    @classmethod
    def _check_secret_key_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        if info.data.get("secret_key"):
            raise ValueError("set JOURNEYS_SECRET_KEY or JOURNEYS_SECRET_KEY_FILE, not both")
        secret_bytes(read_key_file(value))
        return value

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.secret_key_file:
            self.secret_key = read_key_file(self.secret_key_file)
        return self

    def previous_keys(self) -> list[str]:
        return [k.strip() for k in (self.previous_secret_keys or "").split(",") if k.strip()]

    def secret_box(self) -> SecretBox:
        """Seals provider credentials, webhook secrets and TOTP secrets."""
        return SecretBox(self.secret_key, self.previous_keys())

    def vault(self, engine: Engine) -> Vault:
        """Each org's way of storing patient data: encrypted whenever JOURNEYS_SECRET_KEY is set."""
        return Vault(engine, self.key_provider(), self.clock().now)

    def key_provider(self) -> LocalKeyProvider | None:
        """Wraps each org's data keys (journeys.keys); None without JOURNEYS_SECRET_KEY. Previous
        keys too weak to be a key-encryption key never wrapped one, so they are left out."""
        if not self.secret_key:
            return None
        previous = []
        for key in self.previous_keys():
            try:
                previous.append(secret_bytes(key))
            except WeakSecretKey:
                continue
        return LocalKeyProvider(secret_bytes(self.secret_key), previous)

    @classmethod
    def defaults(cls) -> Settings:
        """The built-in defaults, the environment not read (for services given no settings)."""
        return cls.model_construct()

    def clock(self) -> SystemClock:
        """The clock every service of this process reads."""
        return SystemClock(timedelta(seconds=self.clock_offset_seconds))

    # Outbound requests to tenant-chosen URLs (webhooks, http_request steps): public addresses
    # only, plus these CIDRs and host names (comma-separated), e.g. "10.0.0.0/8,ehr.local".
    outbound_allow: str = ""

    @field_validator("outbound_allow")
    @classmethod
    def _check_outbound_allow(cls, value: str) -> str:
        OutboundPolicy.parse(value)  # raises ValueError naming the bad entries
        return value

    def limits(self) -> LimitSettings:
        return LimitSettings(
            enabled=self.rate_limits,
            per_address=Rate(self.rate_limit_address_per_second, self.rate_limit_address_burst),
            per_token=Rate(self.rate_limit_token_per_second, self.rate_limit_token_burst),
            auth_failures=self.auth_failure_limit,
            auth_window_seconds=self.auth_failure_window_seconds,
        )

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.parse(self.outbound_allow)
