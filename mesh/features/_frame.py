"""Typed feature records <-> pandas frames in the shape Feast pushes and tables expect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesh.features._schema import FeatureRecord, ViewSpec, row_to_columns


def records_to_columns(view: ViewSpec[Any, Any], records: Sequence[FeatureRecord[Any]]) -> dict[str, list[object]]:
    """Column lists: join key, event_timestamp, then the view's features."""
    names = [name for name, _ in view.fields()]
    data: dict[str, list[object]] = {view.join_key: [], "event_timestamp": [], **{n: [] for n in names}}
    for rec in records:
        data[view.join_key].append(rec.entity_key)
        data["event_timestamp"].append(rec.event_timestamp)
        for name, value in row_to_columns(rec.features).items():
            data[name].append(value)
    return data


def records_to_table(view: ViewSpec[Any, Any], records: Sequence[FeatureRecord[Any]]) -> Any:
    import pyarrow as pa

    return pa.table(records_to_columns(view, records), schema=arrow_schema(view))


def records_to_frame(view: ViewSpec[Any, Any], records: Sequence[FeatureRecord[Any]]) -> Any:
    """One row per record, as a pandas frame (for Feast pushes)."""
    import pandas as pd

    frame = pd.DataFrame(records_to_columns(view, records))
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    for name, kind in view.fields():
        if kind == "UnixTimestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def arrow_schema(view: ViewSpec[Any, Any]) -> Any:
    """The parquet schema of the view's offline table."""
    import pyarrow as pa

    types: dict[str, Any] = {"String": pa.string(), "Int64": pa.int64(), "Float64": pa.float64(), "Bool": pa.bool_(),
                             "Array(String)": pa.list_(pa.string()), "Array(Int64)": pa.list_(pa.int64()),
                             "UnixTimestamp": pa.timestamp("us", tz="UTC")}
    fields = [(view.join_key, pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields + [(n, types[t]) for n, t in view.fields()])
