"""The Feast repo, generated in code: entities, push sources, parquet file sources, feature views."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from mesh.config import MeshSettings
from mesh.features._feast import import_feast
from mesh.features._schema import JOIN_KEYS, ViewSpec
from mesh.features._views import DEFAULT_VIEWS, AnyView

DEFAULT_PROJECT = "sunday_ml"


@dataclass(frozen=True)
class FeatureRepoConfig:
    """Where one Feast project lives. Tests use a unique `project` each."""

    project: str
    """Feast project name (letters, digits, underscores); also the Redis namespace of the aggregates."""
    repo_dir: Path
    """Root of generated repos; this project's registry lives in `repo_dir/project`."""
    offline_dir: Path
    """Root of parquet data; this project's event log and tables live in `offline_dir/project`."""
    online_store: Literal["redis", "sqlite"] = "redis"
    redis_url: str = "redis://127.0.0.1:16379/0"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.project):
            raise ValueError(f"project {self.project!r}: only letters, digits and underscores")

    @classmethod
    def from_settings(cls, settings: MeshSettings, project: str = DEFAULT_PROJECT) -> FeatureRepoConfig:
        f = settings.features
        return cls(project, f.repo_dir, f.offline_dir, f.online_store, settings.redis.url)

    @property
    def project_dir(self) -> Path:
        return self.repo_dir / self.project

    @property
    def data_dir(self) -> Path:
        return self.offline_dir / self.project

    @property
    def event_log_dir(self) -> Path:
        return self.data_dir / "events"

    @property
    def namespace(self) -> str:
        return f"sunday-ml:features:{self.project}"


def redis_connection_string(url: str) -> str:
    """``redis://[:pw@]host:port/db`` -> Feast's ``host:port,db=N[,password=pw]``."""
    u = urlparse(url)
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}", f"db={(u.path or '/0').lstrip('/') or '0'}"]
    if u.password:
        parts.append(f"password={u.password}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


class FeatureRepo:
    """Builds, applies and opens the Feast store for a config and a set of views."""

    def __init__(self, config: FeatureRepoConfig, views: Sequence[AnyView] = DEFAULT_VIEWS) -> None:
        self.config = config
        self.views: dict[str, AnyView] = {v.name: v for v in views}
        self._store: Any = None

    def view(self, name: str) -> AnyView:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"feature view {name!r} is not registered; known: {sorted(self.views)}") from None

    def table_path(self, view: ViewSpec[Any, Any]) -> Path:
        return self.config.data_dir / "tables" / f"{view.name}.parquet"

    def repo_config(self) -> Any:
        import_feast()
        from feast.repo_config import RepoConfig

        return RepoConfig(**self._config_dict())

    def _config_dict(self) -> dict[str, Any]:
        c = self.config
        online: dict[str, object]
        if c.online_store == "redis":
            # skip_dedup: ordering is guarded by the aggregates (rows are full states stamped with the
            # newest event time); Feast's own check would drop same-instant updates.
            online = {"type": "redis", "connection_string": redis_connection_string(c.redis_url), "skip_dedup": True}
        else:
            online = {"type": "sqlite", "path": str(c.project_dir / "online.db")}
        return {"project": c.project, "registry": str(c.project_dir / "registry.db"), "provider": "local",
                "online_store": online, "offline_store": {"type": "file"}, "entity_key_serialization_version": 3,
                "repo_path": str(c.project_dir)}

    def store(self) -> Any:
        """The Feast FeatureStore (built once, lazily)."""
        if self._store is None:
            feast = import_feast()
            self.config.project_dir.mkdir(parents=True, exist_ok=True)
            self._store = feast.FeatureStore(config=self.repo_config())
        return self._store

    def definitions(self) -> list[Any]:
        """Entities, file sources, push sources and feature views, as Feast objects."""
        feast = import_feast()
        from feast import types as ft

        types: dict[str, Any] = {"String": ft.String, "Int64": ft.Int64, "Float64": ft.Float64, "Bool": ft.Bool,
                                 "Array(String)": ft.Array(ft.String), "Array(Int64)": ft.Array(ft.Int64),
                                 "UnixTimestamp": ft.UnixTimestamp}
        entities = {name: feast.Entity(name=name, join_keys=[key], value_type=feast.ValueType.STRING)
                    for name, key in JOIN_KEYS.items()}
        objects: list[Any] = list(entities.values())
        for v in self.views.values():
            batch = feast.FileSource(name=f"{v.name}_file", path=str(self.table_path(v)),
                                     timestamp_field="event_timestamp")
            push = feast.PushSource(name=v.push_source, batch_source=batch)
            schema = [feast.Field(name=v.join_key, dtype=ft.String)]
            schema += [feast.Field(name=n, dtype=types[t]) for n, t in v.fields()]
            objects += [batch, push, feast.FeatureView(name=v.name, entities=[entities[v.entity]], ttl=timedelta(0),
                                                       schema=schema, source=push, online=True,
                                                       description=v.description)]
        return objects

    def apply(self) -> None:
        """Register everything and create empty offline tables where none exist yet."""
        from mesh.features._offline import write_table

        for v in self.views.values():
            if not self.table_path(v).exists():
                write_table(self.table_path(v), v, [])
        self._write_yaml()
        self.store().apply(self.definitions())

    def _write_yaml(self) -> None:
        # For people who want the feast CLI (`feast -c <dir> feature-views list`); the code is the source.
        # JSON is valid YAML.

        config = {k: v for k, v in self._config_dict().items() if k != "repo_path"}
        path = self.config.project_dir / "feature_store.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# generated by mesh.features; do not edit\n" + json.dumps(config, indent=2) + "\n")
