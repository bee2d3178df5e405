from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"


class KafkaSettings(BaseModel):
    """Where the Kafka broker is and how clients talk to it."""

    bootstrap_servers: str = Field("127.0.0.1:19092", description="host:port[,host:port] of the brokers")
    topic_prefix: str = Field("", description="prepended to every physical topic name (tests, tenants of a cluster)")
    client_id: str = Field("sunday-ml", description="client.id reported to the broker")
    connect_timeout_s: float = Field(10.0, gt=0, description="how long a client may take to reach the broker at start")
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = Field(
        "none", description="producer compression; faust (aiokafka) consumers need the codec's library installed")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout")
    max_poll_interval_ms: int = Field(300_000, ge=10_000, description="max time between polls before a rebalance")

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host:
                raise ValueError(f"bootstrap server {server!r} is not host:port")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"bootstrap server {server!r} has an invalid port {port!r} (1..65535)")
        return value


class BusSettings(BaseModel):
    """How a service's consumer runs (mesh.bus.ConsumerRunner)."""

    dlq_max_consecutive: int = Field(100, ge=1, description="invalid messages in a row before the consumer stops "
                                     "(and the service exits non-zero) rather than drain a topic into the DLQ")
    linger_s: float = Field(0.005, ge=0, description="after the first record, how long the consumer gathers more "
                            "before handling what came")


class RedisSettings(BaseModel):
    """The Redis used by the Feast online store, quotas and dedupe sets."""

    url: str = Field("redis://127.0.0.1:16379/0", description="redis:// URL")


class TelemetrySettings(BaseModel):
    """OpenTelemetry and Prometheus."""

    service_name: str = Field("sunday-ml", description="OTel service.name")
    exporter: Literal["otlp", "console", "memory", "none"] = Field("none", description="span exporter")
    otlp_endpoint: str = Field("http://127.0.0.1:4317", description="OTLP gRPC endpoint")
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="share of new traces recorded (a trace started "
                                "upstream keeps its caller's decision); below 1 spares the per-span cost under load")
    metrics_port: int = Field(0, ge=0, lt=65536, description="Prometheus /metrics port; 0 = do not serve")
    metrics_host: str = Field("127.0.0.1", description="address /metrics listens on (0.0.0.0 in containers)")


class ServingSettings(BaseModel):
    """The process's gRPC server."""

    host: str = Field("127.0.0.1", description="listen address (0.0.0.0 in containers)")
    port: int = Field(50051, ge=0, lt=65536, description="gRPC port; 0 = pick a free one")
    grace_s: float = Field(10.0, ge=0, description="SIGTERM: how long in-flight calls may take to finish")


class FeatureSettings(BaseModel):
    """The Feast feature store."""

    repo_dir: Path = Field(CACHE_DIR / "feast", description="where the generated Feast repo and registry live")
    online_store: Literal["redis", "sqlite"] = Field("redis", description="sqlite only where Redis is absent")
    offline_dir: Path = Field(CACHE_DIR / "offline", description="parquet event log and feature tables")


class ModelSettings(BaseModel):
    """The MLflow registry and ONNX Runtime."""

    tracking_uri: str = Field(f"sqlite:///{CACHE_DIR / 'mlflow' / 'mlflow.db'}", description="MLflow backend store")
    artifact_dir: Path = Field(CACHE_DIR / "mlflow" / "artifacts", description="MLflow artifact store")
    intra_op_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads per session")
    inter_op_threads: int = Field(1, ge=1, description="ONNX Runtime inter-op threads per session")
    max_batch: int = Field(64, ge=1, description="micro-batching: most requests merged into one run")
    max_wait_ms: float = Field(2.0, ge=0, description="micro-batching: longest a request waits for company")
    reload_interval_s: float = Field(5.0, gt=0, description="how often the registry alias is checked")


class MeshSettings(BaseSettings):
    """Settings shared by every mesh process. Subclass per service; build once in ``__main__``."""

    model_config = SettingsConfigDict(env_prefix="MESH_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["local", "test", "staging", "production"] = "local"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    bus: BusSettings = Field(default_factory=BusSettings)  # type: ignore[arg-type]
    redis: RedisSettings = Field(default_factory=RedisSettings)  # type: ignore[arg-type]
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)  # type: ignore[arg-type]
    features: FeatureSettings = Field(default_factory=FeatureSettings)  # type: ignore[arg-type]
    models: ModelSettings = Field(default_factory=ModelSettings)  # type: ignore[arg-type]
    serving: ServingSettings = Field(default_factory=ServingSettings)  # type: ignore[arg-type]

    @property
    def namespace(self) -> str:
        """Isolates this deployment's Redis keys and Feast project: derived from the Kafka topic prefix, so a
        test or demo on its own topics never reads another's state or dedupe marks ('mesh' when unprefixed)."""
        cleaned = "".join(c if c.isalnum() else "_" for c in self.kafka.topic_prefix).strip("_")
        return cleaned or "mesh"
