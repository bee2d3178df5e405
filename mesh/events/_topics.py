"""The topic registry: each topic declared once, with its schema, producers, consumers and examples."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sunday.ml.v1.events_pb2 import Envelope

from mesh.events._codec import EVENT_TYPES
from mesh.events._examples import example_events

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic, declared once."""

    logical: str
    """Name used in code (``"tasks"``)."""
    name: str
    """Physical topic name before the settings' prefix (``"sunday.tasks"``)."""
    event_types: tuple[str, ...]
    """Envelope payload types allowed on the topic; empty means any (the DLQ)."""
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 3
    retention_ms: int = 7 * DAY_MS
    description: str = ""


_CAPABILITIES = ("assignment", "timeline", "nlp", "anomaly", "personalization", "automation")
_BACKEND = ("sunday.backend", "simulator")

_INPUTS: tuple[TopicSpec, ...] = (
    TopicSpec("tasks", "sunday.tasks",
              ("task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed",
               "task_deleted"),
              _BACKEND, ("features", "timeline", "assignment", "nlp", "personalization", "automation"), partitions=6,
              description="task lifecycle, keyed by tenant:task"),
    TopicSpec("comments", "sunday.comments", ("task_commented",), _BACKEND, ("features", "nlp", "automation"),
              description="comments on tasks"),
    TopicSpec("projects", "sunday.projects",
              ("project_created", "project_updated", "milestone_created", "milestone_completed"),
              _BACKEND, ("features", "timeline", "assignment", "personalization", "automation"),
              description="projects and milestones"),
    TopicSpec("users", "sunday.users", ("user_joined", "user_skills_updated"), _BACKEND,
              ("features", "timeline", "assignment", "personalization", "automation"), retention_ms=30 * DAY_MS,
              description="people and their skills"),
    TopicSpec("activity", "sunday.activity", ("user_activity", "task_viewed"), _BACKEND,
              ("features", "personalization", "automation", "anomaly"),
              partitions=6, retention_ms=3 * DAY_MS, description="logins, edits, exports, views"),
    TopicSpec("automations", "sunday.automations", ("automation_created", "automation_run"), _BACKEND,
              ("features", "automation"), description="automation rules and their runs"),
    TopicSpec("meetings", "sunday.meetings", ("meeting_transcript",), _BACKEND, ("features", "nlp"),
              description="meeting transcripts"),
    TopicSpec("tenants", "sunday.tenants", ("tenant_erased",), ("sunday.backend",), ("nlp",),
              partitions=1, retention_ms=30 * DAY_MS, description="tenant lifecycle: erasure requests"),
    TopicSpec("feedback", "sunday.feedback", ("suggestion_feedback",), ("sunday.frontend", "simulator"),
              ("features", "personalization"), description="accept/reject/click on the mesh's suggestions"),
)

_OUTPUTS: tuple[TopicSpec, ...] = (
    *(TopicSpec(f"predictions.{cap}", f"ml.predictions.{cap}", (f"{cap}_prediction",), (cap,),
                # personalization reads back what it served: the slates its feedback credits (rebuildable)
                ("gateway.webhooks", *((cap,) if cap == "personalization" else ())),
                description=f"predictions of the {cap} service") for cap in _CAPABILITIES),
    TopicSpec("alerts", "ml.alerts", ("alert",), ("timeline", "anomaly", "mlops"), ("gateway.webhooks",),
              description="deadline risk, unusual activity, model drift and degradation (mesh.mlops)"),
    TopicSpec("suggestions", "ml.suggestions", ("suggestion",), ("automation", "assignment"),
              ("gateway.webhooks",), description="suggestions awaiting a human decision"),
    TopicSpec("dlq", "ml.dlq", (), ("mesh.bus",), (), partitions=1, retention_ms=30 * DAY_MS,
              description="poison messages with the reason and original coordinates in headers"),
)


class UnknownTopic(KeyError):
    """A logical topic name that is not declared."""


class TopicRegistry:
    """Logical name -> spec and physical name (with the settings' prefix)."""

    def __init__(self, prefix: str = "", specs: tuple[TopicSpec, ...] = (*_INPUTS, *_OUTPUTS)) -> None:
        self._prefix = prefix
        self._specs = {spec.logical: spec for spec in specs}
        self._by_type = {t: spec for spec in specs for t in spec.event_types}

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self._specs.values())

    def spec(self, logical: str) -> TopicSpec:
        try:
            return self._specs[logical]
        except KeyError:
            raise UnknownTopic(f"topic {logical!r} is not declared; known: {sorted(self._specs)}") from None

    def physical(self, logical: str) -> str:
        return self._prefix + self.spec(logical).name

    def for_event(self, event_type: str) -> TopicSpec:
        """The topic an event type is published on."""
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownTopic(f"no topic carries events of type {event_type!r}") from None

    def examples(self, logical: str) -> list[Envelope]:
        """Example envelopes of every event type the topic carries (fed to every consumer in tests)."""
        return [env for t in self.spec(logical).event_types for env in example_events(t)]

    def consumed_by(self, consumer: str) -> list[TopicSpec]:
        return [spec for spec in self if consumer in spec.consumers]


def _check_complete() -> None:
    declared = {t for spec in (*_INPUTS, *_OUTPUTS) for t in spec.event_types}
    missing = set(EVENT_TYPES) - declared
    if missing:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"event types without a topic: {sorted(missing)}")


_check_complete()
