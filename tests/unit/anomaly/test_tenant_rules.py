"""A tenant's rules changed through the rules store drive the service's handler from the next batch, for that
tenant only; incidents in Redis are listed and acknowledged through the store (RedisAggregates.update).
State under a Redis namespace of the test's own on the local stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import numpy as np
import pytest
import redis
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import Publisher
from mesh.config import MeshSettings
from mesh.events import Envelope, new_envelope
from mesh.features import RedisAggregates
from services.anomaly.ensemble import FloatArray, Scorer
from services.anomaly.handlers import AnomalyHandler
from services.anomaly.rules_store import RulesStore
from services.anomaly.state import DetectorContext, IncidentState, StoreIncidents, anomaly_reducers

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
LOGIN_RULES = """
rules:
  - {name: unusual_activity, kind: score, thresholds: {info: 0.0}}
  - {name: any_login, kind: static, action: login, min_events: 1, within_minutes: 5, severity: warning}
"""


class FlatScorer:
    version = "7"
    weight_iforest = 0.5
    threshold = 100.0

    def components(self, tenants: Sequence[str], vectors: FloatArray,
                   seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.zeros(len(tenants)), np.zeros(len(tenants))


class Published:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def publish(self, env: Envelope) -> None:
        self.envelopes.append(env)


@pytest.fixture
def redis_ns() -> Iterator[tuple[redis.Redis[bytes], str]]:
    r = redis.Redis.from_url(MeshSettings().redis.url)
    ns = f"test-{uuid.uuid4().hex[:10]}"
    yield r, ns
    for key in r.scan_iter(match=f"{ns}:*", count=10_000):
        r.delete(key)


def _login(tenant: str, user: str, minutes: int) -> Envelope:
    return new_envelope(tenant, e.UserActivity(user_id=user, action="login", ip="10.0.0.1", device="laptop"),
                        producer="tests", occurred_at=T0 + timedelta(minutes=minutes))


def test_a_tenants_rule_change_applies_to_that_tenant_from_the_next_batch(
        redis_ns: tuple[redis.Redis[bytes], str]) -> None:
    client, ns = redis_ns
    rules = RulesStore(client, ns)

    def scorer() -> Scorer:
        return FlatScorer()

    dctx = DetectorContext(scorer, lambda tenant: rules.get(tenant).rules)
    store = RedisAggregates(client, ns, reducers=anomaly_reducers(dctx))
    out = Published()
    handler = AnomalyHandler(store, dctx, cast(Publisher, out), rules)

    handler([_login("ta", "u1", 0), _login("tb", "u1", 0)])
    assert out.envelopes == []  # the defaults do not alert on a login
    rules.put("ta", LOGIN_RULES, 0, "admin@ta")
    handler([_login("ta", "u1", 10), _login("tb", "u1", 10)])
    assert [(a.tenant_id, a.alert.rule, a.alert.provenance.model_version) for a in out.envelopes] == \
        [("ta", "any_login", "7")]

    incidents = StoreIncidents(store, lambda tenant: rules.get(tenant).rules)
    listed = incidents.list("ta")
    assert [(i.entity_id, i.status, i.rules) for i in listed] == [("u1", "open", {"any_login"})]
    assert incidents.list("tb") == []
    acked = incidents.set_status("ta", listed[0].incident_id, "acknowledged")
    assert acked is not None and acked.status == "acknowledged"
    rec = store.load(IncidentState, "ta", listed[0].incident_id)
    assert rec is not None and rec.status == "acknowledged" and rec.alerts == 1
    assert incidents.set_status("tb", listed[0].incident_id, "resolved") is None  # not tb's incident

    handler([_login("ta", "u1", 20)])  # within the cooldown: folded into the same (acknowledged) incident
    assert len(out.envelopes) == 1
    rec = store.load(IncidentState, "ta", listed[0].incident_id)
    assert rec is not None and (rec.status, rec.suppressed) == ("acknowledged", 1)
