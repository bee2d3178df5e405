"""The assignment views in the real Feast online store (Redis): the rows the service pushes come back
field for field, stamped with their event time; the ranker reads 50 candidates in one batched read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mesh.features import FeastFeatureClient, InMemoryFeatureClient
from services.assignment.online import FeatureSync, OnlineFeatures
from services.assignment.state import InMemoryState, RedisState
from services.assignment.train import simulated_events
from services.assignment.views import PERSON_VIEW
from simulator import SimConfig
from tests.unit.assignment.helpers import CountingClient, build_service, static_model, tiny_model

pytestmark = pytest.mark.integration


def test_rows_round_trip_through_feast_and_fifty_candidates_are_one_read(
        assignment_feast: tuple[RedisState, OnlineFeatures], tmp_path: Path) -> None:
    state, online = assignment_feast
    events = simulated_events(SimConfig(tenants=1, users_per_tenant=50, weeks=2, seed=4))
    in_feast = FeatureSync(state, online)
    in_memory = FeatureSync(InMemoryState(), OnlineFeatures(InMemoryFeatureClient()))
    for env in events[:40]:  # per event, as the live consumer does
        in_feast.apply(env)
    in_feast.apply_all(events[40:])  # then a backfill
    in_memory.apply_all(events)
    tenant = events[0].tenant_id
    ids = state.active_ids(tenant)
    assert len(ids) == 50 and sorted(in_memory.state.active_ids(tenant)) == ids
    got, want = online.people(tenant, ids), in_memory.online.people(tenant, ids)
    assert len(got) == 50
    for g, w in zip(got, want, strict=True):
        assert replace(g, as_of=w.as_of) == w  # every feature, field for field
        assert g.as_of == w.as_of.replace(microsecond=0)  # the Feast row's event time (whole seconds)
    assert online.people(tenant, ["nobody", ids[0]])[0].user_id == ids[0]

    assert isinstance(online.client, FeastFeatureClient)
    service = build_service(static_model(tiny_model(tmp_path / "model")), state=state, client=online.client)
    task_id = [e.task_created.task_id for e in events if e.type == "task_created"][-1]
    prediction = service.ranker.rank_assignees(tenant, task_id, k=5)
    assert isinstance(service.client, CountingClient) and (PERSON_VIEW.name, 50) in service.client.reads
    assert len(service.client.reads) == 2 and len(prediction.candidates) == 5
