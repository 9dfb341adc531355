"""Settings from the environment (prefix GASDISPATCH_), one object for the whole process."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me"
DEV_QR_KEY = "dev-only-qr-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GASDISPATCH_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres:gasdispatch-local@127.0.0.1:55432/gasdispatch"
    redis_url: str = "redis://127.0.0.1:56379/0"
    db_pool_size: int = 10
    redis_max_connections: int = 200

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
    # Websockets: per-socket message limits (phones stream a fix every few seconds).
    ws_max_message_bytes: int = 65_536
    ws_rate_per_s: float = 10.0
    ws_burst: int = 30
    # Run the periodic work inside the API process (the demo); otherwise run `gasdispatch worker`.
    embedded_worker: bool = True
    stale_after_s: int = 60
    max_speed_kmh: float = 150.0
    detour_factor: float = 1.3
    speed_kmh: float = 25.0
    default_service_radius_m: float = 8000.0
    offer_timeout_s: int = 30
    emergency_offer_timeout_s: int = 15
    batch_window_s: float = 2.0
    max_offer_attempts: int = 5
    # An emergency with no free technician may take one from a routine job not yet started.
    emergency_preempt: bool = True
    position_persist_every_s: int = 30

    # Ratings: windows, reputation (Bayesian, time-decayed), abuse and retraining thresholds.
    review_edit_window_h: float = Field(24.0, gt=0)
    review_window_h: float = Field(72.0, gt=0)
    # Silence is "no complaint", not praise: 4 sits under the usual mean without punishing.
    review_automatic_stars: int = Field(4, ge=1, le=5)
    review_automatic_weight: float = Field(0.3, ge=0, le=1)  # 0 = automatic reviews do not count
    review_repeat_period_days: float = Field(30.0, ge=0)
    review_repeat_weight: float = Field(0.25, ge=0, le=1)
    reputation_prior_mean: float = Field(4.5, ge=1, le=5)  # until the platform has its own mean
    reputation_platform_prior_reviews: int = Field(100, ge=1)
    reputation_prior_weight: float = Field(5.0, gt=0)
    reputation_half_life_days: float = Field(180.0, gt=0)
    retraining_threshold: float = Field(3.5, ge=1, le=5)
    retraining_min_count: float = Field(8.0, ge=0)
    abuse_one_star_min_reviews: int = Field(3, ge=1)
    abuse_burst_window_h: float = Field(24.0, gt=0)
    abuse_burst_min_count: int = Field(5, ge=1)
    abuse_new_account_days: float = Field(7.0, ge=0)

    stripe_api_key: str = "sk_test_localstripe"
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = "whsec_local"
    payment_gateway: Literal["sandbox", "stripe"] = "sandbox"
    # Settlement: the card used for holds until customers store their own payment methods;
    # GASDISPATCH_FAULT kills the settlement worker at a named point (crash tests only).
    settlement_payment_method_ref: str = "pm_card_visa"
    fault: str | None = None

    # Meters. TLS is required unless plain TCP is enabled for legacy concentrators, and
    # then only from the listed addresses.
    meters_tls_cert_file: str | None = None
    meters_tls_key_file: str | None = None
    meters_plain_tcp_enabled: bool = False
    meters_plain_tcp_allowed: list[str] = Field(default_factory=list)
    meters_device_timezone: str = "Asia/Shanghai"  # meter clocks (CJ/T 188) carry local time
    # Per-platform webhook secrets, e.g. {"ctwing": "..."}; the signature covers "ts.body".
    meters_webhook_secrets: dict[str, str] = Field(default_factory=dict)
    meters_webhook_tolerance_s: int = 300
    # None: only the detector's own alarm state raises a methane alarm.
    meters_lel_alarm_pct: float | None = None
    meters_comm_lost_factor: float = 3.0
    # Appliance kind -> {"m3": consumption, "days": elapsed} since its last service.
    meters_reminder_thresholds: dict[str, dict[str, float]] = Field(default_factory=lambda: {
        "boiler": {"m3": 2000.0, "days": 365.0},
        "stove": {"m3": 600.0, "days": 365.0},
        "hose": {"m3": 1500.0, "days": 540.0},
    })
    meters_reminder_period_days: int = 30

    # Field execution. QR payloads are signed with the active key; any listed key id verifies,
    # so a key is rotated by adding the new one, switching the active id, then dropping the old.
    qr_signing_keys: dict[str, str] = Field(default_factory=lambda: {"dev": DEV_QR_KEY})
    qr_active_key_id: str = "dev"
    qr_ttl_s: int = Field(300, ge=30)
    field_code_ttl_s: int = Field(4 * 3600, ge=60)
    field_code_max_failures: int = Field(5, ge=1)
    field_arrival_radius_m: float = Field(150.0, gt=0)
    # Days to fix a hazard by severity when the technician gives no deadline.
    field_hazard_deadline_days: dict[str, int] = Field(
        default_factory=lambda: {"critical": 1, "major": 7, "minor": 30})
    field_inspection_period_days: int = Field(730, ge=1)
    field_campaign_horizon_days: int = Field(14, ge=1)
    field_campaign_max_tries: int = Field(3, ge=1)

    # Web clients: maps draw vector layers on a plain background; a tile server is optional
    # (e.g. "https://tiles.example/{z}/{x}/{y}.png"), since the deployment may be offline.
    map_tile_url: str | None = None
    map_tile_attribution: str = ""

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> "Settings":
        if self.environment == "production" and (
            self.jwt_secret == DEFAULT_JWT_SECRET or len(self.jwt_secret) < 32
        ):
            raise ValueError("GASDISPATCH_JWT_SECRET must be set to a strong secret in production")
        if self.environment == "production" and (
            DEV_QR_KEY in self.qr_signing_keys.values() or any(len(k) < 32 for k in self.qr_signing_keys.values())
        ):
            raise ValueError("GASDISPATCH_QR_SIGNING_KEYS must hold strong keys of your own in production")
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
