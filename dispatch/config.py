"""Settings from the environment (prefix GASDISPATCH_), one object for the whole process."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GASDISPATCH_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres:gasdispatch-local@127.0.0.1:55432/gasdispatch"
    redis_url: str = "redis://127.0.0.1:56379/0"
    db_pool_size: int = 10

    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_ttl_s: int = 3600
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = 1_000_000

    # Login throttling: failures allowed per window, per account and per client address.
    login_max_failures: int = 5
    login_window_s: int = 900

    currency: str = "CNY"
    # SLA by priority, minutes from creation to technician arrival.
    sla_emergency_min: int = 30
    sla_urgent_min: int = 240
    sla_routine_min: int = 2880
    certification_renewal_notice_days: int = 30

    # Matching
    city: str = "demo"
    stale_after_s: int = 60
    max_speed_kmh: float = 150.0
    detour_factor: float = 1.3
    speed_kmh: float = 25.0
    default_service_radius_m: float = 8000.0
    offer_timeout_s: int = 30
    emergency_offer_timeout_s: int = 15
    batch_window_s: float = 2.0
    max_offer_attempts: int = 5
    position_persist_every_s: int = 30

    stripe_api_key: str = "sk_test_localstripe"
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = "whsec_local"
    payment_gateway: Literal["sandbox", "stripe"] = "sandbox"

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> "Settings":
        if self.environment == "production" and (
            self.jwt_secret == DEFAULT_JWT_SECRET or len(self.jwt_secret) < 32
        ):
            raise ValueError("GASDISPATCH_JWT_SECRET must be set to a strong secret in production")
        return self

    def sla_minutes(self, priority: str) -> int:
        return {
            "emergency": self.sla_emergency_min,
            "urgent": self.sla_urgent_min,
            "routine": self.sla_routine_min,
        }[priority]


@lru_cache
def get_settings() -> Settings:
    return Settings()
