"""The batch handler's effects exactly once: a redelivered batch leaves the state as it was and re-publishes
the same prediction ids; labels dedupe on read; the live rows equal the training replay's; missing state
is a transient failure, rebuilt before predicting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

import services.assignment.ranker as ranker_module
from mesh.bus import InMemoryBroker, Publisher
from mesh.errors import Unavailable
from mesh.events import Envelope, TopicRegistry, decode, new_envelope, occurred_at
from mesh.features import Applied, InMemoryAggregates, StateMissing, rebuild
from services.assignment.dataset import build_dataset
from services.assignment.features import PeopleArrays, PersonFeatures, TaskFeatures, feature_matrix
from services.assignment.handlers import JsonlLabelSink, read_labels, segments
from services.assignment.online import TOPICS
from services.assignment.state import ASSIGNMENT_REDUCERS, EVENT_TYPES, StateStore
from tests.unit.assignment.helpers import World, build_service


def _inputs(world: World, n: int) -> list[Envelope]:
    return [ev for ev in world.events if ev.type in EVENT_TYPES][:n]


def _published(broker: InMemoryBroker, registry: TopicRegistry) -> list[Envelope]:
    return [decode(m.value) for m in broker.messages(registry.physical("predictions.assignment"))]


def _workload(state: StateStore, tenant: str) -> dict[str, tuple[int, float, int, int]]:
    return {p.user_id: (p.open_tasks, round(p.open_hours, 6), sum(p.done_by_type.values()), p.assigned_total)
            for p in state.people(tenant, state.active_ids(tenant))}


def test_a_redelivered_batch_changes_no_counter_and_republishes_the_same_ids(world: World, tmp_path: Path) -> None:
    events = _inputs(world, 900)
    registry, broker = TopicRegistry("unit."), InMemoryBroker()
    service = build_service(world.static_model())
    labels = JsonlLabelSink(tmp_path / "labels.jsonl")
    handler = service.handler(Publisher(broker.producer(), registry), labels)
    for i in range(0, len(events), 150):
        handler(events[i: i + 150])
    first = _published(broker, registry)
    once = {t: _workload(service.state, t) for t in ("tenant-000", "tenant-001")}
    handler(events[300:450])  # a crash after the commit, before the offsets: the batch comes again
    again = _published(broker, registry)[len(first):]
    created = [ev.event_id for ev in events[300:450] if ev.type == "task_created"]
    assert created and len(again) == len(created)
    assert {p.event_id for p in again} <= {p.event_id for p in first}  # same ids: subscribers dedupe
    assert {t: _workload(service.state, t) for t in once} == once  # workload counters exact
    assert any(v[0] for v in once["tenant-000"].values())  # (and there is workload to count)
    assigned = [ev for ev in events if ev.type == "task_assigned"]
    assert len([lb for lb in read_labels(tmp_path / "labels.jsonl") if lb.kind == "assigned"]) == len(assigned)


class ScoredRows:
    """Records the feature rows the ranker scores (``feature_matrix`` as the ranker calls it), by task id."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: dict[str, np.ndarray] = {}
        self.people: dict[str, list[PersonFeatures]] = {}

        def recording(task: TaskFeatures, people: PeopleArrays, rows: np.ndarray | None = None) -> np.ndarray:
            out = feature_matrix(task, people, rows)
            self.rows[task.task_id] = out
            self.people[task.task_id] = [people.people[i] for i in (range(len(people.people)) if rows is None
                                                                     else rows)]
            return out

        monkeypatch.setattr(ranker_module, "feature_matrix", recording)


class CountingApplies(InMemoryAggregates):
    def __init__(self) -> None:
        super().__init__(ASSIGNMENT_REDUCERS)
        self.applies = 0

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        self.applies += 1
        return super().apply(events, require_built=require_built)


def test_live_batches_rank_on_the_rows_the_training_replay_builds(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    events = _inputs(world, 1500)
    scored = ScoredRows(monkeypatch)
    service = build_service(world.static_model())
    handler = service.handler(Publisher(InMemoryBroker().producer(), TopicRegistry("unit.")))
    for size, start in zip((97, 211, 5, 400, 787), (0, 97, 308, 313, 713), strict=True):
        handler(events[start: start + size])  # many creations per batch, each followed by other events
    data = build_dataset(events)
    offsets = data.offsets
    assert len(data) > 20
    for g, task_key in enumerate(data.task_ids):
        live = scored.rows[task_key.split(":", 1)[1]]
        assert np.array_equal(live, data.x[offsets[g]: offsets[g + 1]]), task_key


def test_one_transaction_per_batch_and_each_task_sees_the_batch_up_to_its_creation(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _inputs(world, 600)
    store = CountingApplies()
    store.mark_built()
    service = build_service(world.static_model(), state=StateStore(store))
    handler = service.handler(Publisher(InMemoryBroker().producer(), TopicRegistry("unit.")))
    handler(events)
    tenant = "tenant-000"
    person = service.state.active_ids(tenant)[0]
    project = next(ev.task_created.project_id for ev in events if ev.type == "task_created" and ev.tenant_id == tenant)
    at = occurred_at(events[-1]) + timedelta(hours=1)

    def created(task_id: str, minutes: int) -> Envelope:
        return new_envelope(tenant, e.TaskCreated(task_id=task_id, project_id=project, task_type="feature",
                                                  required_skills=["rust"], estimate_hours=3.0),
                            producer="tests", occurred_at=at + timedelta(minutes=minutes))

    learns = new_envelope(tenant, e.UserSkillsUpdated(user_id=person, skills=[c.Skill(name="rust", level=5)]),
                          producer="tests", occurred_at=at + timedelta(minutes=1))
    takes = new_envelope(tenant, e.TaskAssigned(task_id="before", project_id=project, assignee_id=person),
                         producer="tests", occurred_at=at + timedelta(minutes=2))
    scored = ScoredRows(monkeypatch)
    applies = store.applies
    handler([created("before", 0), learns, takes, created("after", 3)])
    assert store.applies == applies + 1  # the whole batch in one transaction
    rows = {task: {p.user_id: p for p in people} for task, people in scored.people.items()}
    assert set(rows) == {"before", "after"} and person in rows["before"] and person in rows["after"]
    assert "rust" not in rows["before"][person].skills  # created before the update: does not see it
    assert rows["after"][person].skills.get("rust") == 5  # created after it: sees it
    assert rows["after"][person].open_tasks == rows["before"][person].open_tasks + 1  # and the assignment
    before = service.state.task(tenant, "before")
    assert before is not None and service.state.assignee(tenant, "before") == person  # all of it applied


def test_segments_rank_each_task_as_of_its_creation(world: World) -> None:
    events = _inputs(world, 400)
    parts = list(segments(events))
    assert [ev for apply, _ in parts for ev in apply] == events
    for apply, created in parts:
        tail = apply[len(apply) - len(created):]
        assert tail == created and all(ev.type == "task_created" for ev in created)


def test_a_lost_state_is_unavailable_until_rebuilt(world: World) -> None:
    events = _inputs(world, 600)
    registry, broker = TopicRegistry("unit."), InMemoryBroker()
    publisher = Publisher(broker.producer(), registry)
    state = StateStore(InMemoryAggregates(ASSIGNMENT_REDUCERS))  # never built: what a wiped Redis looks like
    service = build_service(world.static_model(), state=state)
    with pytest.raises(StateMissing) as info:
        service.handler(publisher)(events[300:400])
    assert isinstance(info.value, Unavailable)  # retried by the runner, never dead-lettered or skipped
    assert not _published(broker, registry)

    def rebuild_from_log() -> None:  # the inputs the retained topics hold
        rebuild(state.store, [events[:300]])

    handler = service.handler(publisher)
    handler._rebuild = rebuild_from_log
    handler(events[300:400])
    created = [ev for ev in events[300:400] if ev.type == "task_created"]
    assert created and len(_published(broker, registry)) == len(created)
    assert state.active_ids("tenant-000")


class WipedAfterCommit(InMemoryAggregates):
    """A store that loses everything right after a commit (Redis restarted without persistence)."""

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        out = super().apply(events, require_built=require_built)
        self.clear()
        return out


def test_no_candidates_is_a_skip_only_while_the_state_is_intact(world: World) -> None:
    events = _inputs(world, 600)
    joined = [ev for ev in events if ev.type == "user_joined" and ev.tenant_id == "tenant-000"]
    task = next(ev for ev in events if ev.type == "task_created" and ev.tenant_id == "tenant-000")
    registry, broker = TopicRegistry("unit."), InMemoryBroker()
    publisher = Publisher(broker.producer(), registry)
    build_service(world.static_model()).handler(publisher)([task])  # nobody joined the tenant yet: logged
    assert not _published(broker, registry)
    lost = StateStore(WipedAfterCommit(ASSIGNMENT_REDUCERS))
    lost.store.mark_built()
    with pytest.raises(Unavailable):
        build_service(world.static_model(), state=lost).handler(publisher)([*joined, task])
    assert not _published(broker, registry)


def test_topics_of_the_service_carry_every_event_type_it_reduces() -> None:
    registry = TopicRegistry()
    carried = {t for name in TOPICS for t in registry.spec(name).event_types}
    assert set(EVENT_TYPES) <= carried
