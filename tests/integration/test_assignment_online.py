"""The assignment state in the real Redis: the rows equal the in-memory replay's field for field (live
batches and a redelivered batch included); the ranker reads 50 candidates in batched reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.features import InMemoryAggregates
from services.assignment.online import OnlineFeatures
from services.assignment.ranker import AssignmentRanker
from services.assignment.state import ASSIGNMENT_REDUCERS, PersonState, StateStore
from services.assignment.train import simulated_events
from simulator import SimConfig
from tests.unit.assignment.helpers import CountingStore, static_model, tiny_model

pytestmark = pytest.mark.integration


def test_redis_rows_equal_the_replay_and_fifty_candidates_are_one_read(
        assignment_state: StateStore, tmp_path: Path) -> None:
    events = simulated_events(SimConfig(tenants=1, users_per_tenant=50, weeks=2, seed=4))
    for env in events[:40]:  # per event, as a slow live stream arrives
        assignment_state.apply([env])
    for i in range(40, len(events), 300):  # then in batches, as a backlog
        assignment_state.apply(events[i: i + 300])
    assignment_state.apply(events[100:700])  # a redelivery: nothing counts twice
    replay = StateStore(InMemoryAggregates(ASSIGNMENT_REDUCERS))
    for env in events:
        replay.apply([env])
    tenant = events[0].tenant_id
    ids = assignment_state.active_ids(tenant)
    assert len(ids) == 50 and replay.active_ids(tenant) == ids
    assert assignment_state.people(tenant, ids) == replay.people(tenant, ids)  # every feature, field for field
    assert assignment_state.people(tenant, ["nobody", ids[0]])[0].user_id == ids[0]

    counting = CountingStore()
    counting.apply(events)
    state = StateStore(counting)
    ranker = AssignmentRanker(state, OnlineFeatures(state), static_model(tiny_model(tmp_path / "model")))
    task_id = [e.task_created.task_id for e in events if e.type == "task_created"][-1]
    counting.reads.clear()
    prediction = ranker.rank_assignees(tenant, task_id, k=5)
    person_reads = [n for kind, n in counting.reads if kind == PersonState.kind]
    assert person_reads[0] == 50 and len(person_reads) <= 2  # batched: the pool, then the shortlist
    assert len(prediction.candidates) == 5
