"""Settings from the environment (prefix GASDISPATCH_), one object for the whole process.

Secrets have development values only so that tests run without set-up; outside the test
environment each must be set to a strong value of the install's own (`gasdispatch secrets init`
writes them to var/secrets.env, which is read when present).
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, IPvAnyNetwork, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me"
DEV_QR_KEY = "dev-only-qr-key-change-me"
DEV_STRIPE_API_KEY = "sk_test_localstripe"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_local"
DEV_VAPID_PRIVATE_KEY = "jVsOkxl91a6f1lGngDifh-id4GRBAoIGG4eYhE3Gg5A"  # a P-256 key for tests only
MIN_SECRET_LENGTH = 32
# Where `gasdispatch secrets init` writes and every command reads the install's secrets; a
# deployment may keep them elsewhere (e.g. /etc/gasdispatch/secrets.env).
SECRETS_FILE = Path(os.environ.get("GASDISPATCH_SECRETS_FILE")
                    or Path(__file__).resolve().parent.parent / "var" / "secrets.env")


class EscalationLadder(BaseModel):
    """How one priority climbs while nobody has accepted it (matching/escalation.py)."""

    offers_per_round: tuple[int, ...] = Field((1,), min_length=1)  # K offered at once; the last repeats
    round_radius_m: tuple[float, ...] = ()  # search radius per round; empty: the default radius
    # Who let an offer lapse may be offered the order again after this; None: never (the batch
    # finds the next technician; re-asking cost routine wait in the simulator).
    cooldown_s: float | None = Field(None, ge=0)
    alert_after_s: tuple[tuple[float, Literal["critical", "warning"]], ...] = ()  # ops alerts by age
    until_deadline: bool = False  # keep offering until the SLA deadline, else max_offer_attempts


def default_escalation_ladders() -> dict[str, EscalationLadder]:
    return {
        "emergency": EscalationLadder(offers_per_round=(3, 5, 8), round_radius_m=(3000.0, 8000.0, 15000.0),
                                      cooldown_s=60.0, alert_after_s=((120.0, "critical"),), until_deadline=True),
        "urgent": EscalationLadder(alert_after_s=((900.0, "warning"),)),
        "routine": EscalationLadder(),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GASDISPATCH_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres:gasdispatch-local@127.0.0.1:55432/gasdispatch"
    redis_url: str = "redis://127.0.0.1:56379/0"
    # "host:port,host:port": a Redis Cluster's seed nodes, used instead of redis_url.
    redis_cluster_nodes: str = ""
    db_pool_size: int = 10
    redis_max_connections: int = 200

    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_ttl_s: int = 900
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = 1_000_000
    # Bearer token for GET /metrics; unset outside tests means /metrics answers 404.
    metrics_token: str | None = None

    # Web Push (dispatch/push.py): the VAPID signing key (P-256, raw 32 bytes base64url; the
    # public key is derived and served to the pages), the contact the push services may write to,
    # and the push services' origins an endpoint may name (fnmatch patterns): the server POSTs to
    # the stored endpoint, so an arbitrary one would let a client aim requests at internal hosts.
    vapid_private_key: str = DEV_VAPID_PRIVATE_KEY
    vapid_subject: str = "mailto:ops@gasdispatch.invalid"
    push_service_origins: list[str] = Field(default_factory=lambda: [
        "https://fcm.googleapis.com", "https://updates.push.services.mozilla.com", "https://web.push.apple.com",
        "https://*.push.apple.com", "https://*.notify.windows.com"])
    push_timeout_s: float = Field(5.0, gt=0)

    # Login: failures back off per (account, client address) in a moving window, so failures
    # elsewhere never lock the owner out, nor one address everybody behind it. X-Forwarded-For is
    # believed only from these proxies (addresses or CIDR networks).
    login_max_failures: int = 5
    login_window_s: int = 900
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # Registrations per client address per hour: a 409 on a taken email must not enumerate users.
    register_max_per_hour: int = 20
    # Access tokens (jwt_ttl_s) are short; a refresh token renews them and is rotated on each use.
    refresh_ttl_s: int = 30 * 86400

    currency: str = "CNY"
    # SLA by priority, minutes from creation to technician arrival.
    sla_emergency_min: int = 30
    sla_urgent_min: int = 240
    sla_routine_min: int = 2880
    certification_renewal_notice_days: int = 30
    # Orders a customer places himself: open at once (409 above), and created per moving window
    # (429 above; `limits` notation, several separated by ";"). Meters, follow-ups and campaigns
    # are not counted.
    customer_max_open_orders: int = Field(5, ge=1)
    customer_order_rate: str = "5/minute;30/day"

    # Matching
    city: str = "demo"
    # Websockets: per-socket message limits (phones stream a fix every few seconds).
    ws_max_message_bytes: int = 65_536
    ws_rate_per_s: float = 10.0
    ws_burst: int = 30
    # Run the periodic work inside the API process (the demo); otherwise run `gasdispatch worker`.
    embedded_worker: bool = True
    # The CPU priority (nice value) a `worker --roles urgent` process gives itself, so that an
    # emergency's round does not queue for a core behind routine work on a busy machine; it uses
    # little CPU, so it cannot starve the rest. Needs root or CAP_SYS_NICE (systemd: Nice=);
    # without them the worker logs `worker.priority_not_raised` and runs as it is. 0: leave it.
    urgent_worker_nice: int = Field(-5, ge=-20, le=0)
    # Start-up: how long `serve`/`worker` wait for PostgreSQL and Redis before exiting non-zero.
    startup_timeout_s: float = Field(5.0, gt=0)
    # Readiness (/v1/health): workers whose heartbeat must be fresh (0: none expected), and the
    # dead letters and oldest ready job's age above which the backbone is not ready.
    health_min_workers: int = Field(1, ge=0)
    health_max_dead_letters: int = Field(100, ge=0)
    health_max_ready_age_s: float = Field(60.0, gt=0)
    stale_after_s: int = 60
    max_speed_kmh: float = 150.0
    detour_factor: float = 1.3
    speed_kmh: float = 25.0
    default_service_radius_m: float = 8000.0
    offer_timeout_s: int = 30
    emergency_offer_timeout_s: int = 15
    batch_window_s: float = 2.0
    max_offer_attempts: int = 5
    # Event deliveries (kit/events.py): tries before a dead letter, exponential backoff between
    # them, and how often a handler may answer NotReady before that too is a dead letter.
    events_max_attempts: int = Field(8, ge=1)
    events_backoff_base_s: float = Field(1.0, gt=0)
    events_backoff_cap_s: float = Field(300.0, gt=0)
    events_max_deferrals: int = Field(500, ge=1)
    # Worker (app/worker.py): provider calls at once across all workers, and the cron schedules
    # (UTC) of the periodic jobs that run once per period.
    payout_concurrency: int = Field(2, ge=1)
    cron_comm_lost: str = "*/5 * * * *"
    cron_consumption: str = "10 2 * * *"
    cron_reminders: str = "20 2 * * *"
    cron_campaign: str = "30 2 * * *"
    cron_ledger_anchor: str = "5 0 * * *"  # UTC: anchors the chain tips of the day just ended
    cron_day_plan: str = "0 12 * * *"  # UTC (20:00 in China): plans every city's next local day
    day_plan_time_limit_s: float = Field(10.0, gt=0, le=600)
    # Today's plans again as on-demand work and bookings arrive (and at once after an insertion).
    cron_replan: str = "*/15 * * * *"
    # The arrival-time model refitted on the trips recorded so far (matching/eta.py), when new ones arrived.
    cron_train_eta: str = "40 2 * * *"
    replan_time_limit_s: float = Field(2.0, gt=0, le=120)
    # An emergency with no free technician may take one from a routine job not yet started.
    emergency_preempt: bool = True
    position_persist_every_s: int = 30
    # Escalation ladder and emergency readiness (issue 14). Off: one offer at a time, a lapsed
    # technician never again for that order, no alerts. Ladders by priority as JSON.
    escalation_enabled: bool = True
    escalation_ladders: dict[str, EscalationLadder] = Field(default_factory=default_escalation_ladders)
    # Emergency readiness: each station area keeps a floor of free emergency-certified technicians,
    # from its emergency rate over the past days, so that the leaks of one SLA find one with this
    # probability; routine work may not take them. 0.7 met both readiness targets on 30 simulated
    # days (bench/matching_assign.py); 0.9 kept more and cost routine work 27 % more wait.
    reserve_history_days: float = Field(28.0, gt=0)
    reserve_cover_probability: float = Field(0.7, ge=0, lt=1)
    reposition_hint_every_s: int = Field(300, ge=10)

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

    stripe_api_key: str = DEV_STRIPE_API_KEY
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = DEV_STRIPE_WEBHOOK_SECRET
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
    # A report without the device's own clock (M-Bus, clockless CJ/T 188) that repeats an
    # earlier one byte for byte within this window is a retransmission.
    meters_retransmit_window_s: int = Field(600, ge=1)
    # Binding: source -> other sources that may also carry its devices (a standby
    # concentrator), e.g. {"concentrator:dtu-7": ["concentrator:dtu-7b"]}.
    meters_binding_alternates: dict[str, list[str]] = Field(default_factory=dict)
    # The listener's Prometheus endpoint (`gasdispatch meters listen`); 0 turns it off.
    meters_metrics_port: int = Field(9190, ge=0, le=65535)
    # Platform valve commands: platform -> the adapter's command URL (HTTP POST, signed with
    # the platform's webhook secret); a platform without one gets the recording adapter.
    meters_platform_command_urls: dict[str, str] = Field(default_factory=dict)
    meters_command_max_attempts: int = Field(5, ge=1)
    meters_command_backoff_s: float = Field(2.0, gt=0)  # doubles per attempt

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
    # The latest deadline a technician may give, by severity: a critical hazard cannot wait a year.
    field_hazard_max_deadline_days: dict[str, int] = Field(
        default_factory=lambda: {"critical": 3, "major": 30, "minor": 180})
    field_inspection_period_days: int = Field(730, ge=1)
    field_campaign_horizon_days: int = Field(14, ge=1)
    field_campaign_max_tries: int = Field(3, ge=1)

    # Gas emergency hotline by city (digits, an optional leading "+" and dashes), shown with 119
    # on every "I smell gas" screen; the demo city's number stands in until an install sets its own.
    emergency_hotlines: dict[str, Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9-]{1,19}$")]] = Field(
        default_factory=lambda: {"demo": "96777"})

    # The utility that issues the customer's receipt (GET /v1/orders/{id}/receipt); demo values
    # until an install sets its own registered name, tax id and address.
    invoice_issuer_name: str = Field("演示燃气有限公司 (Demo Gas Co.)", min_length=1, max_length=200)
    invoice_issuer_tax_id: str = Field("DEMO-TAX-ID-0000", min_length=1, max_length=40)
    invoice_issuer_address: str = Field("演示市燃气路 1 号 (1 Gas Road, Demo City)", min_length=1, max_length=300)

    # Web clients: maps draw vector layers on a plain background; a tile server is optional
    # (e.g. "https://tiles.example/{z}/{x}/{y}.png"), since the deployment may be offline.
    map_tile_url: str | None = None
    map_tile_attribution: str = ""
    # Leaflet's {s} values ("01234567" for Tianditu's t0-t7, "1234" for AMap's webrd01-04).
    map_tile_subdomains: str = Field("abc", min_length=1, max_length=20)
    # A layer drawn over the base tiles: Tianditu's place names (cva_w) come apart from its roads.
    map_tile_labels_url: str | None = None
    # The tiles' datum: AMap draws on GCJ-02, so the apps shift WGS-84 points onto it (and a dragged
    # pin back); Tianditu (CGCS2000) and OSM are WGS-84 for a map's purposes.
    map_tile_datum: Literal["wgs84", "gcj02"] = "wgs84"

    # Technician -> household calls through the utility's relay (dispatch/contact.py): per job, so a
    # phone is not rung on end (`limits` notation).
    contact_rate: str = "3/minute;10/hour"

    # Evidence photos by sha256 (kit/objects.py): files under objects_dir, or with "s3" a bucket of
    # any S3-compatible service (endpoint unset: AWS; keys unset: obstore reads AWS_* or the instance's role).
    object_store: Literal["filesystem", "s3"] = "filesystem"
    objects_dir: Path = Path(__file__).resolve().parent.parent / "var" / "objects"
    object_store_s3_bucket: str | None = None
    object_store_s3_endpoint: str | None = None  # e.g. "https://minio.internal:9000"
    object_store_s3_region: str = "us-east-1"
    object_store_s3_prefix: str = ""
    object_store_s3_access_key_id: str | None = None
    object_store_s3_secret_access_key: str | None = None

    @model_validator(mode="after")
    def _s3_store_needs_a_bucket(self) -> "Settings":
        if self.object_store == "s3" and not self.object_store_s3_bucket:
            raise ValueError("GASDISPATCH_OBJECT_STORE=s3 needs GASDISPATCH_OBJECT_STORE_S3_BUCKET")
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_outside_tests(self) -> "Settings":
        problems = self.weak_secrets()
        if self.environment != "test" and problems:
            raise ValueError("refusing to start with development or weak secrets: " + "; ".join(problems)
                             + " (run `gasdispatch secrets init` or set them in the environment)")
        unsigned = sorted(set(self.meters_platform_command_urls) - set(self.meters_webhook_secrets))
        if unsigned:  # commands to a platform are signed with its secret, never with an empty one
            raise ValueError(f"GASDISPATCH_METERS_WEBHOOK_SECRETS has no secret for {', '.join(unsigned)}")
        return self

    def weak_secrets(self) -> list[str]:
        """Every secret setting still at a development value or too short to resist guessing."""
        def weak(value: str | None, *defaults: str) -> bool:
            return value is not None and (value in defaults or len(value) < MIN_SECRET_LENGTH)

        problems = []
        if weak(self.jwt_secret, DEFAULT_JWT_SECRET):
            problems.append("GASDISPATCH_JWT_SECRET")
        if any(weak(key, DEV_QR_KEY) for key in self.qr_signing_keys.values()):
            problems.append("GASDISPATCH_QR_SIGNING_KEYS")
        if weak(self.stripe_webhook_secret, DEV_STRIPE_WEBHOOK_SECRET):
            problems.append("GASDISPATCH_STRIPE_WEBHOOK_SECRET")
        if self.payment_gateway == "stripe" and self.stripe_api_key == DEV_STRIPE_API_KEY:
            problems.append("GASDISPATCH_STRIPE_API_KEY")
        if any(weak(secret) for secret in self.meters_webhook_secrets.values()):
            problems.append("GASDISPATCH_METERS_WEBHOOK_SECRETS")
        if weak(self.metrics_token):
            problems.append("GASDISPATCH_METRICS_TOKEN")
        if weak(self.vapid_private_key, DEV_VAPID_PRIVATE_KEY):
            problems.append("GASDISPATCH_VAPID_PRIVATE_KEY")
        return problems

    def sla_minutes(self, priority: str) -> int:
        return {
            "emergency": self.sla_emergency_min,
            "urgent": self.sla_urgent_min,
            "routine": self.sla_routine_min,
        }[priority]


@lru_cache
def get_settings() -> Settings:
    # The install's generated secrets; the environment still wins over the file. Tests never
    # read it, so a developer's local file cannot change what the suite sees.
    if os.environ.get("GASDISPATCH_ENVIRONMENT") != "test" and SECRETS_FILE.is_file():
        return Settings(_env_file=(".env", SECRETS_FILE))
    return Settings()
