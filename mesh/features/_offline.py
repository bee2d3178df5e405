"""Offline feature tables, rebuilt from the event log, and point-in-time training sets.

Each table holds one row per (entity, event that changed it), stamped with that event's time, computed
by replaying the log in event-time order. A row stamped t therefore reflects only events at or before
t, and Feast's point-in-time join (latest row at or before the entity row's timestamp) cannot leak the
future.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.events import Envelope, occurred_at
from mesh.features._aggregates import InMemoryAggregates
from mesh.features._eventlog import EventLog
from mesh.features._frame import records_to_table
from mesh.features._repo import FeatureRepo
from mesh.features._schema import FeatureRecord, ViewSpec, record_of

ROW_ID = "__row"


@dataclass(frozen=True)
class OfflineBuild:
    events: int
    rows: dict[str, int]
    """view name -> rows written."""


def write_table(path: Path, view: ViewSpec[Any, Any], records: Sequence[FeatureRecord[Any]]) -> None:
    import pyarrow.parquet as pq

    table = records_to_table(view, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)


def event_time_order(events: Iterable[Envelope]) -> list[Envelope]:
    """Unique events (first copy of each id), stably sorted by event time."""
    unique: dict[str, Envelope] = {}
    for env in events:
        unique.setdefault(env.event_id, env)
    return sorted(unique.values(), key=occurred_at)


def build_offline_tables(repo: FeatureRepo, events: Iterable[Envelope] | None = None) -> OfflineBuild:
    """Rewrite every view's table from `events` (default: the repo's event log)."""
    source = events if events is not None else (e.envelope for e in EventLog(repo.config.event_log_dir).read())
    ordered = event_time_order(source)
    aggregates = InMemoryAggregates()
    rows: dict[str, dict[tuple[str, object], FeatureRecord[Any]]] = {v: {} for v in repo.views}
    for env in ordered:
        for state in aggregates.apply([env]).changed:
            for view in repo.views.values():
                if isinstance(state, view.state_type):
                    rec = record_of(view, state)
                    rows[view.name][(rec.entity_key, rec.event_timestamp)] = rec  # last one at an instant wins
    for view in repo.views.values():
        write_table(repo.table_path(view), view, list(rows[view.name].values()))
    return OfflineBuild(len(ordered), {name: len(r) for name, r in rows.items()})


def training_frame(repo: FeatureRepo, entity_df: Any, features: Sequence[str], *, rebuild: bool = True) -> Any:
    """Point-in-time correct features for each row of `entity_df` (join key columns + `event_timestamp`).

    `features` are ``"view:feature"`` references or view names (all of a view's features). Columns come
    back as ``<view>__<feature>``; rows keep the input's order, with nulls where nothing was known yet.
    """
    import pandas as pd

    if rebuild:
        build_offline_tables(repo)
    refs = [ref for f in features for ref in (repo.view(f).feature_refs() if ":" not in f else [f])]
    frame = entity_df.reset_index(drop=True).copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame[ROW_ID] = range(len(frame))
    result = repo.store().get_historical_features(entity_df=frame, features=refs, full_feature_names=True).to_df()
    columns = [ref.replace(":", "__") for ref in refs]
    # Feast's file store drops entity rows that precede every row of their entity: put them back as nulls.
    found = result.set_index(ROW_ID)[columns].reindex(range(len(frame)))
    return pd.concat([frame.drop(columns=[ROW_ID]), found.reset_index(drop=True)], axis=1)
