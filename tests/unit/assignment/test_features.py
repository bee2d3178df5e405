"""Features: the event-fed state, the matrix, point-in-time dataset rows."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import TASK_TYPE_SLOTS, Envelope, new_envelope
from mesh.features import EventLog, LoggedEvent, record_of
from mesh.metrics import ndcg_at_k, reciprocal_rank
from services.assignment.dataset import build_dataset, events_from_log
from services.assignment.features import (
    N_FEATURES,
    PersonFeatures,
    TaskFeatures,
    column,
    feature_matrix,
)
from services.assignment.state import (
    Label,
    PersonState,
    StateStore,
    TaskState,
    labels_of,
    person_features,
)
from services.assignment.views import PERSON_VIEW, TASK_VIEW, person_of, task_of

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def env(payload: object, minutes: int = 0) -> Envelope:
    return new_envelope("t1", payload, producer="test", occurred_at=T0 + timedelta(minutes=minutes))  # type: ignore[arg-type]


def stream() -> list[Envelope]:
    return [
        env(e.UserJoined(user_id="ana", role="engineer", seniority=3, capacity_hours_per_week=40,
                         skills=[c.Skill(name="python", level=5), c.Skill(name="sql", level=3)])),
        env(e.UserJoined(user_id="bo", role="designer", seniority=2, capacity_hours_per_week=30,
                         skills=[c.Skill(name="figma", level=4)])),
        env(e.TaskCreated(task_id="t-1", project_id="p", task_type="bug", required_skills=["python"],
                          estimate_hours=6), 1),
        env(e.TaskAssigned(task_id="t-1", project_id="p", assignee_id="ana"), 2),
        env(e.TaskCreated(task_id="t-2", project_id="p", task_type="bug", required_skills=["python"],
                          estimate_hours=4), 3),
        env(e.TaskCompleted(task_id="t-1", project_id="p", assignee_id="ana", actual_hours=5), 4),
        env(e.TaskAssigned(task_id="t-2", project_id="p", assignee_id="ana"), 5),
    ]


def _applied(events: list[Envelope], state: StateStore | None = None) -> tuple[StateStore, list[Label]]:
    state = state or StateStore()
    labels = []
    for ev in events:
        state.apply([ev])
        labels += labels_of(state, [ev])
    return state, labels


def test_events_keep_workload_history_and_labels() -> None:
    store, labels = _applied(stream()[:4])
    ana = store.person("t1", "ana")
    assert ana is not None and ana.open_tasks == 1 and ana.open_hours == 6 and ana.assigned_by_project == {"p": 1}
    assert [(lb.task_id, lb.user_id, lb.kind) for lb in labels] == [("t-1", "ana", "assigned")]
    _, labels = _applied(stream()[4:], store)
    ana = store.person("t1", "ana")
    assert ana is not None and ana.open_tasks == 1 and ana.open_hours == 4
    assert ana.done_by_type == {"bug": 1} and ana.hours_by_type == {"bug": 5}
    assert [lb.kind for lb in labels] == ["completed", "assigned"]
    assert len({lb.event_id for lb in labels}) == 2  # a label is identified by its event


def test_any_arrival_order_and_redelivery_give_the_same_state() -> None:
    events = stream()
    ordered, _ = _applied(events)
    for seed in range(4):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        state = StateStore()
        state.apply(shuffled[:4])
        state.apply(shuffled)  # redelivered: each event still counts once
        for user in ("ana", "bo"):
            assert state.person("t1", user) == ordered.person("t1", user)
        assert state.task("t1", "t-2") == ordered.task("t1", "t-2")


def test_matrix_reflects_skill_match_and_load() -> None:
    task = TaskFeatures("t", "p", "bug", 2, ("python", "sql"), 8.0)
    people = [PersonFeatures("a", {"python": 5, "sql": 5}), PersonFeatures("b", {"figma": 4}, open_hours=20)]
    x = feature_matrix(task, people)
    assert x.shape == (2, N_FEATURES) and x.dtype == np.float32
    assert x[0, column("x_skill_coverage")] == 1.0 and x[1, column("x_skill_coverage")] == 0.0
    assert x[1, column("x_load_after")] > x[0, column("x_load_after")]


def test_dataset_rows_are_as_of_task_creation() -> None:
    data = build_dataset(stream())
    assert list(data.sizes) == [2, 2] and list(data.relevant) == [0, 0]
    first, second = data.x[0], data.x[2]  # ana's rows for t-1 and t-2
    assert first[column("p_open_tasks")] == 0  # t-1 itself is not in ana's workload when it is created
    assert abs(second[column("p_open_tasks")] - np.log1p(1)) < 1e-3  # t-1 was open when t-2 was created
    assert second[column("x_type_done")] == 0  # completed after t-2 was created: not visible


def test_the_views_derive_the_rows_the_ranker_reads() -> None:
    state, _ = _applied(stream())
    people = state.store.load_many(PersonState, "t1", ["ana", "bo"])
    for p in people:
        assert p is not None
        record = record_of(PERSON_VIEW, p)
        assert person_of(p.entity_id, record) == replace(person_features(p), as_of=record.event_timestamp)
    task = state.store.load(TaskState, "t1", "t-2")
    assert task is not None and task_of(record_of(TASK_VIEW, task)) == state.task("t1", "t-2")


def test_person_columns_cover_every_task_type() -> None:
    from services.assignment.views import PersonRow

    names = set(PersonRow.__dataclass_fields__)
    assert all(f"done_{t}" in names and f"hours_{t}" in names for t in TASK_TYPE_SLOTS)


def test_dataset_from_the_event_log_equals_the_dataset_from_the_stream(tmp_path: Path) -> None:
    events = stream()
    log = EventLog(tmp_path / "events")
    # the ingestor logs in batches, at least once, in consumption order: users and tasks interleave
    log.append([LoggedEvent(ev) for ev in events[2:5]])
    log.append([LoggedEvent(ev) for ev in [*events[:2], events[3], *events[5:]]])
    replayed = events_from_log(tmp_path / "events")
    assert [ev.event_id for ev in replayed] == [ev.event_id for ev in events]
    a, b = build_dataset(events), build_dataset(replayed)
    assert len(a) == 2 and np.array_equal(a.x, b.x) and list(a.relevant) == list(b.relevant)


def test_a_task_completed_without_an_assignment_is_labelled_by_who_completed_it() -> None:
    events = [ev for ev in stream() if not (ev.type == "task_assigned" and ev.task_assigned.task_id == "t-1")]
    data = build_dataset(events)
    assert data.task_ids == ("t1:t-1", "t1:t-2") and list(data.relevant) == [0, 0]


def test_metrics_single_relevant_item_with_ties() -> None:
    assert ndcg_at_k(np.array([3.0, 2.0, 1.0]), 0, 5) == 1.0
    assert reciprocal_rank(np.array([3.0, 2.0, 1.0]), 2) == 1 / 3
    assert reciprocal_rank(np.zeros(2), 0) == (1 + 1 / 2) / 2  # a tie counts as a random order
    assert ndcg_at_k(np.arange(10.0), 0, 5) == 0.0
