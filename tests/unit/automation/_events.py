"""Hand-made event streams for the automation tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from sunday.ml.v1 import events_pb2 as pb

from mesh.events import Envelope, new_envelope

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


class Stream:
    """Builds a tenant's events with deterministic ids and times."""

    def __init__(self, tenant: str = "t1", prefix: str = "") -> None:
        self.tenant = tenant
        self.prefix = prefix or tenant
        self.events: list[Envelope] = []

    def add(self, minutes: float, payload: Message) -> Envelope:
        env = new_envelope(self.tenant, payload, producer="test", occurred_at=T0 + timedelta(minutes=minutes),
                           event_id=f"{self.prefix}-e{len(self.events):05d}")
        self.events.append(env)
        return env

    def task(self, minutes: float, task_id: str, project: str = "p1", task_type: str = "bug",
             priority: pb.Priority.ValueType = pb.PRIORITY_MEDIUM, by: str = "boss") -> None:
        self.add(minutes, pb.TaskCreated(task_id=task_id, project_id=project, task_type=task_type, priority=priority,
                                         created_by=by))

    def steps(self, minutes: float, user: str, task_id: str, steps: tuple[str, ...]) -> None:
        for i, step in enumerate(steps):
            action, _, detail = step.partition(":")
            self.add(minutes + i, pb.UserActivity(user_id=user, action=action, resource=f"{task_id}:{detail}",
                                                  count=1))

    def assign(self, minutes: float, task_id: str, user: str, project: str = "p1") -> None:
        self.add(minutes, pb.TaskAssigned(task_id=task_id, project_id=project, assignee_id=user, assigned_by="boss"))



WORKFLOW = ("move_item:board=archive", "set_field:estimate=8h", "notify:channel=#support")


def planted_stream(n: int = 12, tenant: str = "t1") -> Stream:
    """u1 files every new bug (in p1) by hand with WORKFLOW, 5 minutes after it is created, 10 of 12 times;
    u2 works in p1 and p2 and does unrelated single actions."""
    s = Stream(tenant)
    s.assign(0, "seed-1", "u1")
    s.assign(0, "seed-2", "u2")
    s.assign(0, "seed-3", "u2", project="p2")
    for i in range(n):
        at = 60.0 * (i + 1)
        s.task(at, f"bug-{i}")
        if i % 6 != 5:
            s.steps(at + 5, "u1", f"bug-{i}", WORKFLOW)
        s.task(at + 20, f"feat-{i}", task_type="feature")
        s.steps(at + 30, "u2", f"feat-{i}", (f"notify:user=x{i % 4}",))
    return s
