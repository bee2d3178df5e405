"""A tiny hand-written world for the personalization tests: two tenants that reuse the same ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, new_envelope
from mesh.features import AggregateStore, InMemoryAggregates
from services.personalization.factors import PolicyModel, Segments
from services.personalization.linucb import LinUCBConfig
from services.personalization.recommend import Policy, Recommender
from services.personalization.state import PERSONALIZATION_REDUCERS

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
NOW = T0 + timedelta(days=2)


def ev(tenant: str, payload: Message, minutes: float) -> Envelope:
    return new_envelope(tenant, payload, producer="test", occurred_at=T0 + timedelta(minutes=minutes),
                        event_id=str(uuid.uuid4()))


def world(tenant: str) -> list[Envelope]:
    """alice in proj-a, bob in proj-b; proj-a has task-1 (open), task-2 (done), task-3 (open);
    proj-b has task-9. Views: alice looked at task-3 a lot."""
    out = [ev(tenant, e.UserJoined(user_id=u), 0) for u in ("alice", "bob")]
    out += [ev(tenant, e.ProjectCreated(project_id="proj-a", member_ids=["alice"]), 1),
            ev(tenant, e.ProjectCreated(project_id="proj-b", member_ids=["bob"]), 1)]
    for i, (task, project, kind) in enumerate([("task-1", "proj-a", "bug"), ("task-2", "proj-a", "docs"),
                                                ("task-3", "proj-a", "feature"), ("task-9", "proj-b", "bug")]):
        out.append(ev(tenant, e.TaskCreated(task_id=task, project_id=project, task_type=kind, title=f"{task} title",
                                            priority=e.PRIORITY_MEDIUM), 2 + i))
    out.append(ev(tenant, e.TaskCompleted(task_id="task-2", project_id="proj-a", assignee_id="alice"), 10))
    out += [ev(tenant, e.TaskViewed(task_id="task-3", project_id="proj-a", user_id="alice", dwell_seconds=30), 20 + i)
            for i in range(4)]
    return out


def model() -> PolicyModel:
    return PolicyModel("t1", None, Segments(__import__("numpy").zeros((1, 11))))


def recommender(store: AggregateStore | None = None, policy: Policy = "hybrid") -> Recommender:
    return Recommender(store or InMemoryAggregates(PERSONALIZATION_REDUCERS), model(), policy=policy,
                       config=LinUCBConfig(alpha=0.5, ridge=1.0, epsilon=0.2))


def feedback(tenant: str, suggestion: str, user: str, item: str, action: int, minutes: float) -> Envelope:
    return ev(tenant, e.SuggestionFeedback(suggestion_id=suggestion, capability="personalization", user_id=user,
                                           item_id=item, action=action), minutes)  # type: ignore[arg-type]
