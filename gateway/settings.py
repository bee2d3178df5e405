"""The gateway's one settings class (``MESH_`` env prefix, nested with ``__``), validated at start."""

from __future__ import annotations

import base64
import binascii
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from mesh.config import MeshSettings

CAPABILITIES = ("assignment", "timeline", "nlp", "anomaly", "personalization", "automation")

_PLACEHOLDERS = {"", "changeme", "change-me", "change_me", "secret", "password", "placeholder", "todo", "xxx",
                 "dev", "test", "admin", "default"}


def _refuse_placeholder(name: str, value: str) -> None:
    if value.strip().lower() in _PLACEHOLDERS or value.strip().lower().startswith("changeme"):
        raise ValueError(f"{name} is a placeholder; set a real secret")


class SigningKey(BaseModel):
    """One JWT signing key. Several may be configured: the active one signs, all of them verify."""

    kid: str = Field(min_length=1, max_length=64, description="key id, put in the JWT header")
    private_key_pem: SecretStr = Field(description="PEM of an EC P-256 private key (ES256)")

    @field_validator("private_key_pem")
    @classmethod
    def _real_key(cls, value: SecretStr) -> SecretStr:
        _refuse_placeholder("signing key", value.get_secret_value())
        if "PRIVATE KEY" not in value.get_secret_value():
            raise ValueError("signing key must be a PEM private key")
        return value


class AuthSettings(BaseModel):
    """Token issuance and verification."""

    issuer: str = Field(default="https://api.sunday.com/ml", description="`iss` of issued tokens, checked on use")
    audience: str = Field(default="sunday-ml-gateway", description="`aud` of issued tokens, checked on use")
    token_ttl_s: int = Field(default=900, ge=60, le=86_400, description="lifetime of an access token")
    leeway_s: int = Field(default=5, ge=0, le=120, description="clock skew tolerated on exp/iat")
    signing_keys: list[SigningKey] = Field(default_factory=list, description="keys; empty only in local/test")
    active_kid: str = Field(default="", description="kid of the key that signs new tokens (default: the last one)")
    admin_token: SecretStr = Field(default=SecretStr(""), description="admin routes' bearer token; empty: disabled")

    @field_validator("admin_token")
    @classmethod
    def _real_admin_token(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw:
            _refuse_placeholder("admin token", raw)
            if len(raw) < 24:
                raise ValueError("admin token must be at least 24 characters")
        return value

    @model_validator(mode="after")
    def _active_key_exists(self) -> Self:
        kids = [k.kid for k in self.signing_keys]
        if len(set(kids)) != len(kids):
            raise ValueError("signing key ids must be unique")
        if self.active_kid and self.active_kid not in kids:
            raise ValueError(f"active_kid {self.active_kid!r} is not among the signing keys {kids}")
        return self


class PlanLimits(BaseModel):
    """Rate (token bucket) and quota of one plan; per tenant, and per client within the tenant."""

    rate_per_s: float = Field(gt=0, description="tenant bucket refill, requests per second")
    burst: int = Field(ge=1, description="tenant bucket size")
    client_rate_per_s: float = Field(gt=0, description="per-client bucket refill, requests per second")
    client_burst: int = Field(ge=1, description="per-client bucket size")
    daily_quota: int = Field(ge=1, description="requests per tenant per UTC day")
    monthly_quota: int = Field(ge=1, description="requests per tenant per UTC month")


class RouteLimit(BaseModel):
    """One token bucket: a steady rate and the burst allowed on top of it."""

    rate_per_s: float = Field(gt=0, description="refill, requests per second")
    burst: int = Field(ge=1, description="bucket size")


class AccessLimits(BaseModel):
    """Limits outside the plans: the token endpoint (before anyone is authenticated, so per client id and per
    source address, wrong secrets included) and the management routes (API keys, webhooks, admin)."""

    token_per_client: RouteLimit = Field(default_factory=lambda: RouteLimit(rate_per_s=0.2, burst=10),
                                         description="/oauth/token per client_id asked for")
    token_per_source: RouteLimit = Field(default_factory=lambda: RouteLimit(rate_per_s=2, burst=60),
                                         description="/oauth/token per source address")
    manage_per_client: RouteLimit = Field(default_factory=lambda: RouteLimit(rate_per_s=5, burst=100),
                                          description="API-key and webhook routes per client")
    manage_per_source: RouteLimit = Field(default_factory=lambda: RouteLimit(rate_per_s=20, burst=400),
                                          description="API-key, webhook and admin routes per source address")


def _default_plans() -> dict[str, PlanLimits]:
    return {
        "free": PlanLimits(rate_per_s=5, burst=20, client_rate_per_s=5, client_burst=20, daily_quota=5_000,
                           monthly_quota=50_000),
        "pro": PlanLimits(rate_per_s=50, burst=200, client_rate_per_s=25, client_burst=100, daily_quota=200_000,
                          monthly_quota=3_000_000),
        "enterprise": PlanLimits(rate_per_s=500, burst=2_000, client_rate_per_s=250, client_burst=1_000,
                                 daily_quota=5_000_000, monthly_quota=100_000_000),
    }


class BackendSettings(BaseModel):
    """gRPC targets of the services; an empty target means the service is not deployed (503)."""

    assignment: str = Field(default="127.0.0.1:50051", description="host:port of AssignmentService")
    timeline: str = Field(default="127.0.0.1:50052", description="host:port of TimelineService")
    nlp: str = Field(default="127.0.0.1:50053", description="host:port of NlpService")
    anomaly: str = Field(default="127.0.0.1:50054", description="host:port of AnomalyService")
    personalization: str = Field(default="127.0.0.1:50055", description="host:port of PersonalizationService")
    automation: str = Field(default="127.0.0.1:50056", description="host:port of AutomationService")
    timeout_s: float = Field(default=2.0, gt=0, le=60,
                             description="deadline of one backend call, all its attempts included")
    retry_max_attempts: int = Field(default=3, ge=1, le=10,
                                    description="attempts of a call answered UNAVAILABLE (the first included)")
    retry_initial_backoff_s: float = Field(default=0.05, gt=0, le=5, description="wait before the second attempt")
    retry_max_backoff_s: float = Field(default=0.5, gt=0, le=10, description="cap on one wait between attempts")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503 when a backend is unreachable")
    channels_per_target: int = Field(default=2, ge=1, le=16, description="gRPC channels (HTTP/2 connections) "
                                     "per backend, used round robin: one connection's stream handling is not the "
                                     "ceiling under load")


class EnvelopeKey(BaseModel):
    """One key encrypting webhook signing secrets in Redis (AES-256-GCM)."""

    kid: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="key id, stored with "
                     "each sealed secret")
    key: SecretStr = Field(description="32 random bytes, base64 (`openssl rand -base64 32`)")

    @field_validator("key")
    @classmethod
    def _real_key(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        _refuse_placeholder("webhook secret key", raw)
        try:
            decoded = base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ValueError("webhook secret key must be base64") from None
        if len(decoded) != 32:
            raise ValueError("webhook secret key must be 32 bytes (base64 of `openssl rand 32`)")
        if len(set(decoded)) < 8:
            raise ValueError("webhook secret key is a placeholder (too few distinct bytes); set a random one")
        return value


class WebhookSettings(BaseModel):
    """Webhook delivery."""

    secret_keys: list[EnvelopeKey] = Field(
        default_factory=list, description="keys sealing signing secrets at rest; the active one seals, every one "
        "listed opens (keep an old key until nothing is sealed with it). Empty only in local/test")
    active_secret_kid: str = Field(default="", description="kid of the key sealing new secrets (default: the last)")

    worker_enabled: bool = Field(default=True, description="run the Kafka consumer and the dispatcher in this process")
    consumer_group: str = Field(default="gateway.webhooks", description="Kafka consumer group of the delivery worker")
    topics: list[str] = Field(
        default_factory=lambda: [f"predictions.{c}" for c in CAPABILITIES] + ["alerts", "suggestions"],
        description="logical output topics whose events are delivered")
    max_attempts: int = Field(default=6, ge=1, le=30, description="attempts before a delivery is dead-lettered")
    initial_backoff_s: float = Field(default=2.0, gt=0, description="wait after the first failed attempt")
    multiplier: float = Field(default=2.0, ge=1, description="growth of the wait per attempt")
    max_backoff_s: float = Field(default=600.0, gt=0, description="cap on one wait")
    jitter: float = Field(default=0.2, ge=0, le=1, description="fraction of random spread around each wait")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="one delivery attempt's HTTP timeout")
    allow_private_targets: bool = Field(default=False, description="allow loopback/private targets (tests/local)")
    dispatch_interval_s: float = Field(default=0.2, gt=0, description="how often due deliveries are looked for")
    dispatch_batch: int = Field(default=50, ge=1, description="most deliveries claimed per round")
    max_subscriptions_per_tenant: int = Field(default=50, ge=1)
    consumer_max_restarts: int = Field(default=10, ge=0, le=1000,
                                       description="restarts of a failing Kafka consumer in a row before giving up "
                                                   "(/readyz then answers 503)")
    consumer_restart_backoff_s: float = Field(default=1.0, gt=0, description="wait before the first restart")
    consumer_restart_max_backoff_s: float = Field(default=60.0, gt=0, description="cap on one wait between restarts")
    consumer_healthy_after_s: float = Field(default=300.0, gt=0,
                                            description="a consumer that ran this long before failing starts a "
                                                        "fresh count of restarts")

    @model_validator(mode="after")
    def _active_secret_key_exists(self) -> Self:
        kids = [k.kid for k in self.secret_keys]
        if len(set(kids)) != len(kids):
            raise ValueError("webhook secret key ids must be unique")
        if self.active_secret_kid and self.active_secret_kid not in kids:
            raise ValueError(f"active_secret_kid {self.active_secret_kid!r} is not among the secret keys {kids}")
        return self


class GatewaySettings(MeshSettings):
    """Everything the gateway process needs; built once in ``__main__`` and passed in explicitly."""

    host: str = Field(default="127.0.0.1", description="bind address of `python -m gateway`")
    port: int = Field(default=8080, ge=1, lt=65536, description="bind port of `python -m gateway`")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes of `python -m gateway serve` "
                         "(one per core; every worker needs the same signing keys)")
    redis_prefix: str = Field(default="gw:", description="prefix of every Redis key the gateway writes")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="largest request body accepted (413 beyond)")
    max_json_depth: int = Field(default=32, ge=2, le=256, description="deepest JSON nesting accepted (400 beyond)")
    plans: dict[str, PlanLimits] = Field(default_factory=_default_plans, description="limits per plan")
    default_plan: str = Field(default="free", description="plan of clients created without one")
    access_limits: AccessLimits = Field(default_factory=AccessLimits,
                                        description="token endpoint and management route limits")
    auth: AuthSettings = Field(default_factory=AuthSettings)  # type: ignore[arg-type]
    backends: BackendSettings = Field(default_factory=BackendSettings)  # type: ignore[arg-type]
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _production_ready(self) -> Self:
        if self.default_plan not in self.plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not among the plans {sorted(self.plans)}")
        if self.environment in ("staging", "production"):
            if not self.auth.signing_keys:
                raise ValueError("auth.signing_keys must be configured outside local/test")
            if not self.webhooks.secret_keys:
                raise ValueError("webhooks.secret_keys must be configured outside local/test")
            if self.webhooks.allow_private_targets:
                raise ValueError("webhooks.allow_private_targets is for local/test only")
        if self.workers > 1 and not self.auth.signing_keys:
            # each worker would make its own ephemeral key: a token issued by one fails on the others
            raise ValueError("workers > 1 needs auth.signing_keys (MESH_AUTH__SIGNING_KEYS) shared by every worker")
        return self
