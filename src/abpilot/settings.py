"""Settings from the environment (and a ``.env`` file), with the names of DESIGN.md section 7."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from abpilot.bandits.config import BanditOptions
from abpilot.monitoring.options import MonitoringOptions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///./abpilot.db"
    store: Literal["sql", "redis", "memory"] = "sql"
    redis_url: str | None = None
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = None
    redis_prefix: str = "abp"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    debug: bool = False
    log_format: Literal["text", "json"] = "text"
    experiment_cache_seconds: float = Field(default=1.0, ge=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
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
    api_keys: str | None = None
    jwt_secret: str | None = None
    datafiles_poll_seconds: float = Field(default=2.0, gt=0)
    monitor_max_arm_dominance: float = Field(default=0.70, gt=0, le=1)
    monitor_stale_after_hours: float = Field(default=24.0, gt=0, le=24 * 366)
    monitor_min_rate: float | None = Field(default=None, gt=0, lt=1)
    monitor_at: str = Field(default="09:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # UTC
    monitor_keep: int = Field(default=30, ge=1, le=1000)
    monitor_webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")

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
        )

    def resolved_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def store_url(self) -> str:
        """The URL of the configured store, as ``abpilot.open`` takes it."""
        if self.store == "memory":
            return "memory://"
        if self.store == "redis":
            return self.resolved_redis_url()
        return self.database_url


def get_settings() -> Settings:
    """Read the settings now (environment and ``.env``); nothing is read at import time."""
    return Settings()
