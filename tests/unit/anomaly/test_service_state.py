"""The service's path (reducers in a mesh aggregate store + the batch handler) against the offline detector:
the same alerts with the same ids, redelivery publishes the same ids again and changes nothing, incidents
through the store, a model that is missing holds the batch (Unavailable), an invalid event is refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import Publisher
from mesh.errors import Unavailable
from mesh.events import Envelope, InvalidEvent, new_envelope, occurred_at
from mesh.features import InMemoryAggregates
from services.anomaly.detector import alerts_for, default_rules
from services.anomaly.ensemble import OnnxEnsemble, Scorer
from services.anomaly.handlers import AnomalyHandler
from services.anomaly.state import DetectorContext, IncidentState, StoreIncidents, UserState, anomaly_reducers


class Published:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def publish(self, env: Envelope) -> None:
        self.envelopes.append(env)


def _service(model: Scorer | None) -> tuple[AnomalyHandler, InMemoryAggregates, Published]:
    def scorer() -> Scorer:
        if model is None:
            raise Unavailable("no champion")
        return model

    dctx = DetectorContext(scorer, lambda tenant: default_rules())
    store = InMemoryAggregates(anomaly_reducers(dctx))
    out = Published()
    return AnomalyHandler(store, dctx, cast(Publisher, out), default_rules=default_rules()), store, out


def _batches(events: Sequence[Envelope], size: int) -> list[Sequence[Envelope]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


def test_service_raises_the_offline_detectors_alerts_with_the_same_ids(
        world: tuple[Any, list[Envelope], OnnxEnsemble]) -> None:
    _, events, ens = world
    activity = [ev for ev in events if ev.WhichOneof("payload") == "user_activity"]
    handler, store, out = _service(ens)
    for batch in _batches(activity, 97):
        handler(batch)
    offline, _ = alerts_for(activity, ens)
    last_seen: dict[tuple[str, str], Any] = {}
    for ev in activity:
        last_seen[(ev.tenant_id, ev.user_activity.user_id)] = occurred_at(ev)
    # the service scores an hour when the user's next hour starts; offline also closes the last hours at the end
    expected = {a.event_id for a in offline
                if occurred_at(a) <= last_seen[(a.tenant_id, a.alert.subject_id)]}
    got = [a.event_id for a in out.envelopes]
    assert len(expected) >= 3
    assert len(got) == len(set(got)) and set(got) == expected
    first = out.envelopes[0].alert
    assert first.provenance.model_version == "t1" and first.incident_id and first.evidence
    assert all(a.alert.alert_id == a.event_id for a in out.envelopes)

    # a redelivered batch changes no state and publishes the same alerts under the same ids
    before = {k: store.load(UserState, *k.split(":", 2)[1:]) for k in store.keys(UserState.kind)}
    replay = Published()
    handler._publisher = cast(Publisher, replay)
    for batch in _batches(activity, 250):
        handler(batch)
    assert {a.event_id for a in replay.envelopes} == expected
    after = {k: store.load(UserState, *k.split(":", 2)[1:]) for k in store.keys(UserState.kind)}
    assert after == before

    incidents = StoreIncidents(store, lambda tenant: default_rules())
    tenant = activity[0].tenant_id
    listed = incidents.list(tenant)
    assert {i.incident_id for i in listed} == {a.alert.incident_id for a in out.envelopes}
    assert sum(i.alerts for i in listed) == len(got)
    some = listed[0]
    assert incidents.set_status(tenant, some.incident_id, "acknowledged") is not None
    rec = store.load(IncidentState, tenant, some.incident_id)
    assert rec is not None and rec.status == "acknowledged"
    assert incidents.set_status("another-tenant", some.incident_id, "resolved") is None


def test_without_a_champion_a_batch_closing_an_hour_is_held(world: tuple[Any, list[Envelope], OnnxEnsemble]) -> None:
    _, events, _ = world
    activity = [ev for ev in events if ev.WhichOneof("payload") == "user_activity"]
    handler, store, _ = _service(None)
    user = activity[0].user_activity.user_id
    mine = [ev for ev in activity if ev.user_activity.user_id == user]
    first_hour = occurred_at(mine[0]).replace(minute=0, second=0, microsecond=0)
    same_hour = [ev for ev in mine if occurred_at(ev).replace(minute=0, second=0, microsecond=0) == first_hour]
    handler(same_hour)  # nothing to score yet: no model needed
    later = next(ev for ev in mine if occurred_at(ev).replace(minute=0, second=0, microsecond=0) > first_hour)
    with pytest.raises(Unavailable):
        handler([later])
    state = store.load(UserState, later.tenant_id, user)
    assert state is not None and state.hours_scored == 0 and state.last_event_id == same_hour[-1].event_id


def test_invalid_activity_is_refused() -> None:
    handler, _, _ = _service(None)
    bad = new_envelope("t1", e.UserActivity(user_id="u1", action="login"), producer="tests")
    bad.user_activity.action = ""  # what a broken producer could put on the wire
    with pytest.raises(InvalidEvent, match="action"):
        handler([bad])
