"""Aggregates without Feast: idempotence, order independence, derived numbers."""

from __future__ import annotations

import random
from datetime import timedelta

from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import TopicRegistry
from mesh.features import (
    USER_VIEW,
    InMemoryAggregates,
    ProjectState,
    TaskState,
    TenantState,
    UserState,
)
from tests.unit.features._stream import T0, env, stream


def _snapshot(agg: InMemoryAggregates) -> dict[str, object]:
    out = {}
    for kind, state_type in (("task", TaskState), ("user", UserState), ("project", ProjectState),
                             ("tenant", TenantState)):
        for key in agg.keys(kind):
            _, tenant, entity = key.split(":", 2)
            state = agg.load(state_type, tenant, entity)
            assert state is not None
            out[key] = state.model_dump(mode="json")
    return out


def test_same_event_twice_changes_nothing() -> None:
    agg = InMemoryAggregates()
    ev = env("t", e.TaskCommented(task_id="k", project_id="p", comment_id="c1", author_id="u"), T0)
    first = agg.apply([ev])
    before = _snapshot(agg)
    again = agg.apply([ev])
    in_batch = InMemoryAggregates().apply([ev, ev])
    assert (first.applied, again.applied, again.duplicates, again.changed) == (1, 0, 1, ())
    assert _snapshot(agg) == before
    assert in_batch.applied == 1 and in_batch.duplicates == 1
    task = agg.load(TaskState, "t", "k")
    assert task is not None and task.n_comments == 1


def test_older_status_does_not_overwrite_newer() -> None:
    agg = InMemoryAggregates()
    newer = env("t", e.TaskStatusChanged(task_id="k", to_status=e.TASK_STATUS_IN_REVIEW), T0 + timedelta(hours=2))
    older = env("t", e.TaskStatusChanged(task_id="k", to_status=e.TASK_STATUS_IN_PROGRESS), T0 + timedelta(hours=1))
    agg.apply([newer])
    agg.apply([older])
    task = agg.load(TaskState, "t", "k")
    assert task is not None
    assert task.status == e.TASK_STATUS_IN_REVIEW
    assert task.n_status_changes == 2  # counters still count the late event
    assert task.as_of == T0 + timedelta(hours=2)


def test_any_arrival_order_gives_the_same_state() -> None:
    events = stream(seed=3, tenants=1, users=5, tasks=25)
    ordered = InMemoryAggregates()
    ordered.apply(events)
    for seed in range(3):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        agg = InMemoryAggregates()
        for i in range(0, len(shuffled), 7):
            agg.apply(shuffled[i: i + 7])
        assert _snapshot(agg) == _snapshot(ordered)


def test_workload_and_speed_follow_the_tasks() -> None:
    agg = InMemoryAggregates()
    t = T0
    agg.apply([
        env("t", e.UserJoined(user_id="u", seniority=3, capacity_hours_per_week=40,
                              skills=[c.Skill(name="sql", level=2), c.Skill(name="go", level=4)]), t),
        env("t", e.TaskCreated(task_id="a", project_id="p", task_type="bug", estimate_hours=4), t),
        env("t", e.TaskCreated(task_id="b", project_id="p", task_type="ops", estimate_hours=10), t),
        env("t", e.TaskAssigned(task_id="a", project_id="p", assignee_id="u"), t + timedelta(minutes=1)),
        env("t", e.TaskAssigned(task_id="b", project_id="p", assignee_id="u"), t + timedelta(minutes=1)),
        env("t", e.TaskCompleted(task_id="a", project_id="p", assignee_id="u", actual_hours=6),
            t + timedelta(hours=5)),
        # reassignment of b moves its hours to v
        env("t", e.TaskAssigned(task_id="b", project_id="p", assignee_id="v"), t + timedelta(hours=6)),
    ])
    user, other = agg.load(UserState, "t", "u"), agg.load(UserState, "t", "v")
    project = agg.load(ProjectState, "t", "p")
    assert user is not None and other is not None and project is not None
    row = USER_VIEW.derive(user)
    assert (row.open_tasks, row.est_hours_left, row.completed_count, row.completed_bug) == (0, 0.0, 1, 1)
    assert row.speed_ratio == 1.5 and row.skills == ("go", "sql") and row.skill_levels == (4, 2)
    assert (USER_VIEW.derive(other).open_tasks, USER_VIEW.derive(other).est_hours_left) == (1, 10.0)
    assert (len(project.tasks), sum(project.tasks.values())) == (2, 1)


def test_tenants_never_mix() -> None:
    agg = InMemoryAggregates()
    agg.apply([env("a", e.TaskCommented(task_id="k", comment_id="1"), T0),
               env("b", e.TaskCommented(task_id="k", comment_id="2"), T0),
               env("b", e.TaskCommented(task_id="k", comment_id="3"), T0)])
    a, b = agg.load(TaskState, "a", "k"), agg.load(TaskState, "b", "k")
    assert a is not None and b is not None and (a.n_comments, b.n_comments) == (1, 2)


def test_every_example_of_every_input_topic_is_consumed() -> None:
    registry = TopicRegistry()
    specs = registry.consumed_by("features")
    assert {s.name for s in specs} >= {"sunday.tasks", "sunday.users", "sunday.projects", "sunday.activity"}
    agg = InMemoryAggregates()
    for spec in specs:
        examples = registry.examples(spec.logical)
        assert agg.apply(examples).applied == len(examples)
