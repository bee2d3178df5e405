"""Mutable state of one tenant while it is simulated, shared by the generators of that tenant."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import Message

from simulator._world import Person, Project, Tenant, World


class EventQueue:
    """Pending events of every tenant, ordered by (time, insertion order): the merge is deterministic."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Message]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, t: float, tenant_id: str, payload: Message) -> None:
        heapq.heappush(self._heap, (t, self._seq, tenant_id, payload))
        self._seq += 1

    def pop_before(self, t_end: float) -> Iterator[tuple[float, str, Message]]:
        heap = self._heap
        while heap and heap[0][0] < t_end:
            t, _, tenant_id, payload = heapq.heappop(heap)
            yield t, tenant_id, payload


@dataclass(slots=True)
class TaskState:
    task_id: str
    project_id: str
    milestone_id: str
    task_type: str
    priority: int
    component: str
    created: float
    vector: np.ndarray
    assignee: str = ""
    done: float = 0.0


@dataclass(slots=True)
class PersonState:
    person: Person
    busy_until: float
    levels: dict[str, int]
    open: list[tuple[float, float, float]] = field(default_factory=list)
    """(start, end, hours) of assigned work not yet finished at the last look."""
    pending_levels: list[tuple[float, str, int]] = field(default_factory=list)
    project_counts: dict[str, int] = field(default_factory=dict)
    practice: dict[str, int] = field(default_factory=dict)

    def skill_levels(self, t: float) -> dict[str, int]:
        """Skills as they are at ``t`` (level-ups scheduled for later are not visible yet)."""
        while self.pending_levels and self.pending_levels[0][0] <= t:
            _, skill, level = heapq.heappop(self.pending_levels)
            self.levels[skill] = max(level, self.levels.get(skill, 0))
        return self.levels

    def remaining_hours(self, t: float) -> float:
        self.open = [w for w in self.open if w[1] > t]
        return sum(h if t < s else h * (e - t) / max(e - s, 1.0) for s, e, h in self.open)


TaskListener = Callable[[float, Message, TaskState], None]


class TenantContext:
    """Everything the generators of one tenant share: world facts, runtime state and the output queue."""

    def __init__(self, world: World, tenant: Tenant, queue: EventQueue) -> None:
        self.world = world
        self.tenant = tenant
        self.horizon = world.horizon
        self._queue = queue
        self.people: dict[str, Person] = {p.user_id: p for p in tenant.people}
        self.states = {p.user_id: PersonState(p, world.t0, dict(p.skills)) for p in tenant.people}
        self.projects: dict[str, Project] = {p.project_id: p for p in tenant.projects}
        self.member_of: dict[str, list[str]] = {p.user_id: [] for p in tenant.people}
        for project in tenant.projects:
            for uid in project.member_ids:
                self.member_of[uid].append(project.project_id)
        self.recent: dict[str, deque[TaskState]] = {p.project_id: deque(maxlen=40) for p in tenant.projects}
        self.tasks: dict[str, TaskState] = {}
        self.listeners: list[TaskListener] = []

    def emit(self, t: float, payload: Message) -> None:
        self._queue.push(t, self.tenant.tenant_id, payload)

    def emit_task(self, t: float, payload: Message, task: TaskState) -> None:
        """Emit a task event and let trigger listeners (workflows, automations) react to it."""
        self.emit(t, payload)
        for listener in self.listeners:
            listener(t, payload, task)

    def active_projects(self, t0: float, t1: float) -> list[Project]:
        return [p for p in self.tenant.projects if p.start < t1 and p.deadline > t0]

    def joined(self, user_id: str, t: float) -> bool:
        return self.people[user_id].joined_at <= t
