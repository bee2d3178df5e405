"""Feature view specs: a typed row dataclass per view, derived from one kind of aggregate state.

Adding a view is a few lines: a frozen dataclass for the row, a function state -> row, and a
:class:`ViewSpec` passed to the repo (``FeatureRepo(config, views=(*DEFAULT_VIEWS, my_view))``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from mesh.features._state import EntityState

R = TypeVar("R")
S = TypeVar("S", bound=EntityState)

EntityName = Literal["tenant", "user", "task", "project"]
FeastType = Literal["String", "Int64", "Float64", "Bool", "Array(String)", "Array(Int64)", "UnixTimestamp"]

JOIN_KEYS: dict[EntityName, str] = {
    "tenant": "tenant_id",
    "user": "user_key",
    "task": "task_key",
    "project": "project_key",
}
"""Join key of each entity. Every key but the tenant's is ``"<tenant>:<id>"`` so tenants never mix."""


def entity_key(tenant_id: str, entity_id: str = "") -> str:
    """The Feast entity key: the tenant alone, or ``tenant:id``."""
    return f"{tenant_id}:{entity_id}" if entity_id else tenant_id


@dataclass(frozen=True)
class ViewSpec(Generic[S, R]):
    """One feature view: its name, entity, typed row and how the row is derived from aggregate state."""

    name: str
    entity: EntityName
    state_type: type[S]
    """The aggregate the view is derived from (one entity kind)."""
    row_type: type[R]
    """Frozen dataclass; field types: str, int, float, bool, tuple[str, ...], tuple[int, ...], datetime | None."""
    derive: Callable[[S], R]
    description: str = ""

    @property
    def join_key(self) -> str:
        return JOIN_KEYS[self.entity]

    @property
    def push_source(self) -> str:
        return f"{self.name}_push"

    def fields(self) -> list[tuple[str, FeastType]]:
        return list(field_types(self.row_type))

    def feature_refs(self) -> list[str]:
        return [f"{self.name}:{name}" for name, _ in self.fields()]


@dataclass(frozen=True)
class FeatureRecord(Generic[R]):
    """A view's row for one entity, stamped with the event time it is valid from."""

    entity_key: str
    event_timestamp: datetime
    features: R


def feast_type(hint: Any) -> FeastType:
    """Map a row field's Python type to the Feast type name."""
    simple: dict[Any, FeastType] = {str: "String", int: "Int64", float: "Float64", bool: "Bool"}
    if hint in simple:
        return simple[hint]
    if hint == tuple[str, ...]:
        return "Array(String)"
    if hint == tuple[int, ...]:
        return "Array(Int64)"
    if isinstance(hint, types.UnionType) and set(typing.get_args(hint)) == {datetime, type(None)}:
        return "UnixTimestamp"
    raise TypeError(f"unsupported feature type {hint!r}")


def row_to_columns(row: object) -> dict[str, object]:
    """Row dataclass -> column values for a DataFrame (tuples become lists)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(row):  # type: ignore[arg-type]
        value = getattr(row, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


_FIELD_TYPES: dict[object, tuple[tuple[str, FeastType], ...]] = {}


def field_types(row_type: object) -> tuple[tuple[str, FeastType], ...]:
    """(name, Feast type) of each field of a row dataclass (cached: type hints are slow to resolve)."""
    if row_type not in _FIELD_TYPES:
        hints = typing.get_type_hints(row_type)
        fields = dataclasses.fields(row_type)  # type: ignore[arg-type]
        _FIELD_TYPES[row_type] = tuple((f.name, feast_type(hints[f.name])) for f in fields)
    return _FIELD_TYPES[row_type]


def row_from_values(row_type: type[R], values: dict[str, object]) -> R:
    """Feast values (lists, numpy scalars, None) -> the typed row; missing values take the field default."""
    kwargs = {name: _coerce(kind, values[name]) for name, kind in field_types(row_type)
              if values.get(name) is not None}
    return row_type(**kwargs)


def _coerce(kind: FeastType, value: object) -> object:
    if kind == "Array(String)":
        return tuple(str(v) for v in value)  # type: ignore[attr-defined]
    if kind == "Array(Int64)":
        return tuple(int(v) for v in value)  # type: ignore[attr-defined]
    if kind == "UnixTimestamp":
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    casts: dict[FeastType, Callable[[Any], object]] = {"String": str, "Int64": int, "Float64": float, "Bool": bool}
    return casts[kind](value)


def record_of(view: ViewSpec[S, R], state: S) -> FeatureRecord[R]:
    """The view's row for an aggregate state, stamped with the newest event time in it."""
    key = state.tenant_id if view.entity == "tenant" else entity_key(state.tenant_id, state.entity_id)
    return FeatureRecord(key, state.timestamp(), view.derive(state))
