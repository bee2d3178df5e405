"""Features: a Feast repo generated in code, the ingestor that keeps it fresh, the client services read
it with, point-in-time training sets and rebuilds from the event log or a Kafka topic.

Nothing here imports Feast, pandas or pyarrow at import time.
"""

from mesh.features._aggregates import (
    AggregateStore,
    Applied,
    InMemoryAggregates,
    RedisAggregates,
    StateMissing,
    read_view,
)
from mesh.features._client import FeastFeatureClient, FeatureClient, InMemoryFeatureClient
from mesh.features._consumer import CONSUMER_BATCH_SIZE, ingestor_runner, input_topics
from mesh.features._eventlog import Coords, EventLog, LoggedEvent
from mesh.features._ingest import CONSUMER, FeatureIngestor, IngestStats, build_ingestor, open_aggregates
from mesh.features._offline import OfflineBuild, build_offline_tables, training_frame
from mesh.features._project import PROJECT_VIEW, ProjectFeatures, ProjectState
from mesh.features._rebuild import Rebuilder, Rebuilt, apply_rebuilding, rebuild, rebuild_from_inputs
from mesh.features._reduce import ENTITY_REDUCERS
from mesh.features._replay import ReplayStats, TopicReader, replay, replay_log, replay_topic
from mesh.features._repo import DEFAULT_PROJECT, FeatureRepo, FeatureRepoConfig
from mesh.features._schema import JOIN_KEYS, FeatureRecord, ViewSpec, entity_key, record_of
from mesh.features._state import Ctx, EntityState, Reducer, Reducers, Stamp, Txn, stamp_of, state_key
from mesh.features._task import TASK_VIEW, TaskFeatures, TaskState
from mesh.features._tenant import TENANT_VIEW, TenantFeatures, TenantState
from mesh.features._user import USER_VIEW, UserFeatures, UserState
from mesh.features._views import DEFAULT_VIEWS

__all__ = [
    "CONSUMER",
    "CONSUMER_BATCH_SIZE",
    "DEFAULT_PROJECT",
    "DEFAULT_VIEWS",
    "ENTITY_REDUCERS",
    "JOIN_KEYS",
    "PROJECT_VIEW",
    "TASK_VIEW",
    "TENANT_VIEW",
    "USER_VIEW",
    "AggregateStore",
    "Applied",
    "Coords",
    "Ctx",
    "EntityState",
    "EventLog",
    "FeastFeatureClient",
    "FeatureClient",
    "FeatureIngestor",
    "FeatureRecord",
    "FeatureRepo",
    "FeatureRepoConfig",
    "InMemoryAggregates",
    "InMemoryFeatureClient",
    "IngestStats",
    "LoggedEvent",
    "OfflineBuild",
    "ProjectFeatures",
    "ProjectState",
    "Rebuilder",
    "Rebuilt",
    "RedisAggregates",
    "Reducer",
    "Reducers",
    "ReplayStats",
    "Stamp",
    "StateMissing",
    "TaskFeatures",
    "TaskState",
    "TenantFeatures",
    "TenantState",
    "TopicReader",
    "Txn",
    "UserFeatures",
    "UserState",
    "ViewSpec",
    "apply_rebuilding",
    "build_ingestor",
    "build_offline_tables",
    "entity_key",
    "ingestor_runner",
    "input_topics",
    "open_aggregates",
    "read_view",
    "rebuild",
    "rebuild_from_inputs",
    "record_of",
    "replay",
    "replay_log",
    "replay_topic",
    "stamp_of",
    "state_key",
    "training_frame",
]
