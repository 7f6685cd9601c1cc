"""Settings from the environment (and a ``.env`` file), named as README.md § Configuration
lists them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from abpilot.bandits.config import BanditOptions
from abpilot.monitoring.options import MonitoringOptions

JWT_SECRET_MIN_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash output
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(entry: str) -> str:
    """A ``CORS_ORIGINS`` entry as the browser writes it in ``Origin`` (``*``, or
    ``scheme://host[:port]`` in lower case without a default port), or a ValueError."""
    if entry == "*":
        return entry
    match = _ORIGIN.fullmatch(entry)
    port = int(match["port"]) if match and match["port"] else None
    if match is None or (port is not None and not 1 <= port <= 65535):
        hint = ""
        if "://" in entry and entry.split("://", 1)[1].find("/") >= 0:
            hint = "; an origin has no path, not even a trailing '/'"
        raise ValueError(
            f"CORS_ORIGINS entry {entry!r} is not an origin: expected '*' or "
            f"'http(s)://host[:port]' such as 'https://app.example.com:8080'{hint}"
        )
    scheme, host = match["scheme"].lower(), match["host"].lower()
    shown = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown}"


class Settings(BaseSettings):
    # Errors name the setting but not its value: values may be secrets.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    database_url: str = "sqlite:///./abpilot.db"
    # PostgreSQL: each worker's pool for transactions (DATABASE_POOL_SIZE connections kept, up to
    # DATABASE_MAX_OVERFLOW more under load) and its autocommit twin for one-statement paths
    # (DATABASE_POOL_SIZE): at most 2 * DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW per worker.
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    store: Literal["sql", "redis", "memory"] = "sql"
    redis_url: str | None = None
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: SecretStr | None = None
    redis_prefix: str = "abp"
    # REDIS_CLUSTER=true: the Redis at REDIS_URL (or REDIS_HOST:REDIS_PORT) is a node of a Redis
    # Cluster, reached through redis-py's RedisCluster (its URL becomes redis+cluster://).
    redis_cluster: bool = False
    # REDIS_WAIT_REPLICAS=n: an intake step is acknowledged once n replicas hold it (Redis WAIT,
    # at most REDIS_WAIT_TIMEOUT_MS); 0 acknowledges once the master applied it.
    redis_wait_replicas: int = Field(default=0, ge=0)
    redis_wait_timeout_ms: int = Field(default=100, ge=1)  # WAIT with 0 never returns
    # API_HOST / API_PORT: the names the Multi-Armed Bandit Optimization API reads (HOST wins).
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("host", "api_host"))
    port: int = Field(
        default=8000, ge=1, le=65535, validation_alias=AliasChoices("port", "api_port")
    )
    workers: int = Field(default=1, ge=1)
    debug: bool = False
    log_format: Literal["text", "json"] = "text"
    experiment_cache_seconds: float = Field(default=1.0, ge=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
    # The dedupe window: an event id is recognised as a duplicate for at least this many days
    # (0: forever, the state growing without bound). A week covers client retries, a stream's
    # redeliveries and a replay after a weekend's outage, and bounds the ids kept to a week's.
    event_id_retention_days: int = Field(default=7, ge=0, le=36_500)
    update_interval_minutes: float = Field(default=30, gt=0)
    min_exposures_for_update: int = Field(default=100, ge=0)
    default_window_days: int = Field(default=14, ge=1)
    max_window_days: int = Field(default=30, ge=1)
    min_impressions: int = Field(default=200, ge=0)
    thompson_samples: int = Field(default=10_000, ge=100)
    prior_alpha: float = Field(default=1.0, gt=0)
    prior_beta: float = Field(default=1.0, gt=0)
    min_weight: float | None = Field(default=None, ge=0, lt=0.5)
    scheduler_enabled: bool = True
    datafiles_dir: Path | None = None
    datafiles_public: bool = True
    api_keys: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwt_require_exp: bool = True
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    datafiles_poll_seconds: float = Field(default=2.0, gt=0)
    monitor_max_arm_dominance: float = Field(default=0.70, gt=0, le=1)
    monitor_stale_after_hours: float = Field(default=24.0, gt=0, le=24 * 366)
    monitor_min_rate: float | None = Field(default=None, gt=0, lt=1)
    monitor_min_avg_rating: float | None = Field(default=None, allow_inf_nan=False)
    monitor_at: str = Field(default="09:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # UTC
    monitor_keep: int = Field(default=30, ge=1, le=1000)
    monitor_webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # The warehouse of warehouse-native experiments (issue 20): a SQLAlchemy URL whose
    # credentials are never logged nor returned; the sources file is loaded at start-up.
    warehouse_url: SecretStr | None = None
    warehouse_sources_file: Path | None = None
    warehouse_refresh_minutes: float = Field(default=60, gt=0)
    warehouse_timeout_seconds: float = Field(default=600, gt=0)

    # Intake from event streams (abpilot.streams): `abpilot consume`, or inside `abpilot serve`.
    stream_consumers: Annotated[tuple[Literal["nats", "redis"], ...], NoDecode] = ()
    stream_batch: int = Field(default=500, ge=1, le=10_000)
    stream_ack_wait_seconds: float = Field(default=30.0, gt=0)
    stream_max_deliveries: int = Field(default=5, ge=1, le=1000)
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = Field(default="ABPILOT_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,100}$")
    nats_subject: str = Field(default="abpilot.events", pattern=r"^[A-Za-z0-9_.*>-]{1,200}$")
    nats_durable: str = Field(default="abpilot", pattern=r"^[A-Za-z0-9_-]{1,100}$")
    nats_dead_letter_subject: str = Field(
        default="abpilot.dead", pattern=r"^[A-Za-z0-9_.-]{1,200}$"
    )
    redis_stream_url: str | None = None
    redis_stream: str = Field(default="abpilot:events", min_length=1, max_length=200)
    redis_stream_group: str = Field(default="abpilot", min_length=1, max_length=100)
    redis_stream_dead_letter: str = Field(
        default="abpilot:events:dead", min_length=1, max_length=200
    )

    _store_reason: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _choose_store(self) -> Settings:
        """Without ``STORE``, a Redis connection setting (``REDIS_URL`` or ``REDIS_HOST``, as
        FeatureVisor Pilot's ``.env`` has) chooses Redis unless ``DATABASE_URL`` is set too."""
        given = self.model_fields_set
        if "store" in given:
            self._store_reason = f"STORE={self.store}"
        elif "database_url" in given:
            redis = (
                " (it wins over the REDIS_* settings)"
                if self.redis_url or ("redis_host" in given and self.redis_host)
                else ""
            )
            self._store_reason = f"STORE is not set and DATABASE_URL is{redis}"
        elif self.redis_url or ("redis_host" in given and self.redis_host):
            which = "REDIS_URL" if self.redis_url else "REDIS_HOST"
            self.store = "redis"
            self._store_reason = f"STORE and DATABASE_URL are not set and {which} is"
        else:
            self._store_reason = "the default: no STORE, DATABASE_URL, REDIS_URL or REDIS_HOST set"
        return self

    def store_choice(self) -> str:
        """Which store the settings choose, where, and why, for the start-up log (no secrets)."""
        if self.store == "memory":
            where = "memory"
        elif self.store == "redis":
            where = f"Redis at {_without_password(self.resolved_redis_url())}"
        else:
            where = f"SQL at {_without_password(self.database_url)}"
        return f"store: {where} ({self._store_reason})"

    @field_validator("jwt_secret", mode="after")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None or not secret.get_secret_value():
            return None  # unset
        size = len(secret.get_secret_value().encode())
        if size < JWT_SECRET_MIN_BYTES:
            raise ValueError(
                f"JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes (got {size}): a short "
                "HS256 secret can be found by brute force from one token; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return secret

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        entries = value.split(",") if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return value  # pydantic reports the type
        return tuple(parse_origin(str(e).strip()) for e in entries if str(e).strip())

    @field_validator("stream_consumers", mode="before")
    @classmethod
    def _consumers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    def bandit_defaults(self) -> BanditOptions:
        """The service-wide bandit defaults that ``settings.bandit`` of an experiment overrides."""
        return BanditOptions(
            prior_alpha=self.prior_alpha,
            prior_beta=self.prior_beta,
            min_weight=self.min_weight,
            min_exposures=self.min_exposures_for_update,
            samples=self.thompson_samples,
            window_days=self.default_window_days,
            max_window_days=self.max_window_days,
            min_impressions=self.min_impressions,
        )

    def monitoring_defaults(self) -> MonitoringOptions:
        """The service-wide thresholds that ``settings.monitoring`` of an experiment overrides."""
        return MonitoringOptions(
            max_arm_dominance=self.monitor_max_arm_dominance,
            stale_after_hours=self.monitor_stale_after_hours,
            min_rate=self.monitor_min_rate,
            min_avg_rating=self.monitor_min_avg_rating,
        )

    def resolved_redis_url(self) -> str:
        if self.redis_url:
            url = self.redis_url
        else:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f":{quote(password, safe='')}@" if password else ""
            db = "" if self.redis_cluster else f"/{self.redis_db}"  # a cluster has only db 0
            url = f"redis://{auth}{self.redis_host}:{self.redis_port}{db}"
        scheme, rest = url.split(":", 1)
        if self.redis_cluster and scheme.lower() in {"redis", "rediss"}:
            return f"{scheme.lower()}+cluster:{rest}"
        return url

    def store_url(self) -> str:
        """The URL of the configured store, as ``abpilot.open`` takes it."""
        if self.store == "memory":
            return "memory://"
        if self.store == "redis":
            return self.resolved_redis_url()
        return self.database_url


def _without_password(url: str) -> str:
    """``url`` with the password of its user part, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def get_settings() -> Settings:
    """Read the settings now (environment and ``.env``); nothing is read at import time."""
    return Settings()
