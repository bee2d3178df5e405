"""The mesh's shared vocabularies, defined once: task types, task statuses and event kinds.

Statuses and event kinds come from the proto (the `TaskStatus` enum, the `Envelope.payload` oneof); task
types are a free string on the wire (`TaskCreated.task_type`), so their vocabulary is fixed here. Every
service, the feature store, the simulator and the benchmarks import these; a test over the source tree
fails when a second definition appears.

"other" is decided here, once: it is NOT a task type (no event carries it) but the slot every unknown or
empty type is counted in. Model inputs and feature columns use :data:`TASK_TYPE_SLOTS` (the known types
in order, then "other"). Trained models depend on that order: only ever append to :data:`TASK_TYPES`, and
bump the feature schema (`FEATURE_SCHEMA` of each model) when you do.
"""

from __future__ import annotations

from sunday.ml.v1 import events_pb2

from mesh.events._codec import EVENT_TYPES

TASK_TYPES: tuple[str, ...] = ("bug", "feature", "design", "docs", "ops", "research", "data", "qa")
"""The task types the platform knows (values of `TaskCreated.task_type`)."""

OTHER_TASK_TYPE = "other"
"""The slot of any task type not in :data:`TASK_TYPES` (including an empty one)."""

TASK_TYPE_SLOTS: tuple[str, ...] = (*TASK_TYPES, OTHER_TASK_TYPE)
"""Per-type feature columns and one-hot inputs, in this order (append-only: models depend on it)."""

_KNOWN_TYPES = frozenset(TASK_TYPES)


def task_type_slot(task_type: str) -> str:
    """The slot a task type counts in: itself when known, else :data:`OTHER_TASK_TYPE`."""
    return task_type if task_type in _KNOWN_TYPES else OTHER_TASK_TYPE


_STATUS_PREFIX = "TASK_STATUS_"
_STATUS_NAMES: dict[int, str] = {
    number: name.removeprefix(_STATUS_PREFIX).lower()
    for name, number in events_pb2.TaskStatus.items()
    if number != events_pb2.TASK_STATUS_UNSPECIFIED
}

TASK_STATUSES: tuple[str, ...] = tuple(_STATUS_NAMES[n] for n in sorted(_STATUS_NAMES))
"""Task statuses by name, in `sunday.ml.v1.TaskStatus` value order: todo, in_progress, in_review, blocked, done."""

STATUS_DONE: int = events_pb2.TASK_STATUS_DONE
"""The `TaskStatus` value of a finished task."""


UNSPECIFIED_STATUS = "unspecified"
"""The name of `TASK_STATUS_UNSPECIFIED` (an unset status); in no feature slot."""


def status_name(value: int) -> str:
    """`TaskStatus` value -> its name in :data:`TASK_STATUSES` (``2`` -> ``"in_progress"``; ``0`` -> "unspecified").

    Raises ValueError for values the proto does not define (validation rejects those events first).
    """
    if value == events_pb2.TASK_STATUS_UNSPECIFIED:
        return UNSPECIFIED_STATUS
    name = _STATUS_NAMES.get(int(value))
    if name is None:
        raise ValueError(f"unknown TaskStatus value {value}")
    return name


__all__ = ["EVENT_TYPES", "OTHER_TASK_TYPE", "STATUS_DONE", "TASK_STATUSES", "TASK_TYPES", "TASK_TYPE_SLOTS",
           "UNSPECIFIED_STATUS", "status_name", "task_type_slot"]
