"""The stream is valid, routed, ordered and causally consistent."""

from __future__ import annotations

from collections import Counter

from mesh.events import TopicRegistry, occurred_at, validate
from simulator import SimConfig, Simulation
from tests.unit.simulator.conftest import Run

EXPECTED_TYPES = {
    "user_joined", "project_created", "milestone_created", "task_created", "task_assigned", "task_status_changed",
    "task_completed", "task_commented", "task_viewed", "task_updated", "user_activity", "meeting_transcript",
    "suggestion_feedback", "automation_created", "automation_run", "project_updated", "milestone_completed",
}


def test_every_envelope_is_valid_and_routes_to_a_declared_topic(world_run: Run) -> None:
    registry = TopicRegistry()
    for env in world_run.events:
        validate(env)
        spec = registry.for_event(env.type)
        assert "simulator" in spec.producers
        assert env.producer == "simulator"


def test_the_stream_covers_every_input_event_type(world_run: Run) -> None:
    assert set(Counter(env.type for env in world_run.events)) >= EXPECTED_TYPES


def test_events_come_in_occurred_at_order_and_within_the_horizon(world_run: Run) -> None:
    times = [env.occurred_at.ToNanoseconds() for env in world_run.events]
    assert times == sorted(times)
    sim = Simulation(world_run.config)
    assert occurred_at(world_run.events[-1]).timestamp() < sim.world.horizon


def test_event_ids_are_unique(world_run: Run) -> None:
    ids = [env.event_id for env in world_run.events]
    assert len(set(ids)) == len(ids)


def test_task_lifecycle_is_causal(world_run: Run) -> None:
    created: set[str] = set()
    status: dict[str, int] = {}
    for env in world_run.events:
        kind = env.type
        if kind == "task_created":
            created.add(env.task_created.task_id)
        elif kind in {"task_assigned", "task_status_changed", "task_completed", "task_commented", "task_viewed"}:
            task_id = getattr(env, kind).task_id
            assert task_id in created, f"{kind} of {task_id} before its task_created"
        if kind == "task_status_changed":
            change = env.task_status_changed
            assert status.get(change.task_id, 1) == change.from_status  # starts in TODO (1)
            status[change.task_id] = change.to_status
        if kind == "task_completed":
            assert status[env.task_completed.task_id] == 5  # DONE first
            assert env.task_completed.actual_hours > 0


def test_small_worlds_are_accepted() -> None:
    events = list(Simulation(SimConfig(users_per_tenant=3, weeks=1, seed=2)).events())
    assert events and all(env.tenant_id == "tenant-000" for env in events)
