"""Configuration: one pydantic-settings class per process, validated at start and passed in explicitly.

Every field can be set from the environment with the ``MESH_`` prefix; nested fields use ``__``
(``MESH_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``). Services subclass :class:`MeshSettings`.
"""

from mesh.config._settings import (
    BusSettings,
    FeatureSettings,
    KafkaSettings,
    MeshSettings,
    ModelSettings,
    RedisSettings,
    ServingSettings,
    TelemetrySettings,
)

__all__ = [
    "BusSettings",
    "FeatureSettings",
    "KafkaSettings",
    "MeshSettings",
    "ModelSettings",
    "RedisSettings",
    "ServingSettings",
    "TelemetrySettings",
]
