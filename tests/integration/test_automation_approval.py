"""The approval workflow on the real Redis: legal and illegal transitions, a concurrent approve/reject that
resolves once, the cool-down after a rejection, expiry, invalid candidates kept but never listed, and the
weekly analytics."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from mesh.config import MeshSettings
from services.automation.approval import (
    ApprovalStore,
    IllegalTransition,
    SuggestionRecord,
    UnknownSuggestion,
    week_of,
)

pytestmark = pytest.mark.integration
NOW = 1_767_600_000.0
RECORD = SuggestionRecord("t1", "sug-1", "u1", "task_created", "task_type=bug", ("a:b", "c:d"), ("p1",), 9, 0.9,
                          actions_per_week=6.0)


@pytest.fixture
def store(settings: MeshSettings) -> Iterator[ApprovalStore]:
    client = redis.Redis.from_url(settings.redis.url)
    ns = f"it_automation_{uuid.uuid4().hex[:10]}"
    yield ApprovalStore(client, ns, cooldown_s=3600, expire_after_s=600)
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)
    client.close()


def test_suggested_to_approved_and_no_way_back(store: ApprovalStore) -> None:
    assert store.offer(RECORD, NOW)[0] == "offered"
    assert [r.suggestion_id for r in store.open("t1")] == ["sug-1"]
    moved = store.transition("t1", "sug-1", "approved", NOW + 1, by="boss")
    assert (moved.previous, moved.changed, moved.record.status, moved.record.decided_by) == (
        "suggested", True, "approved", "boss")
    assert store.open("t1") == []
    with pytest.raises(IllegalTransition, match="sug-1 is approved: only a suggested one can become rejected"):
        store.transition("t1", "sug-1", "rejected", NOW + 2, by="boss")
    again = store.transition("t1", "sug-1", "approved", NOW + 3, by="boss")  # a retried approve: no change
    assert not again.changed and again.record.decided_at == moved.record.decided_at
    with pytest.raises(IllegalTransition, match="unknown target status"):
        store.transition("t1", "sug-1", "suggested", NOW)
    with pytest.raises(UnknownSuggestion):
        store.transition("t1", "nope", "approved", NOW)
    assert store.offer(RECORD, NOW + 4)[1].status == "approved"  # never re-suggested


def test_concurrent_approve_and_reject_resolve_once(store: ApprovalStore) -> None:
    store.offer(RECORD, NOW)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(to: str) -> None:
        barrier.wait()
        try:
            result = "changed" if store.transition("t1", "sug-1", to, NOW, by=to).changed else "same"
        except IllegalTransition:
            result = "refused"
        with lock:
            outcomes.append(f"{to}:{result}")

    threads = [threading.Thread(target=decide, args=(to,)) for to in ("approved", "rejected") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get("t1", "sug-1").status
    assert [o for o in outcomes if o.endswith(":changed")] == [f"{final}:changed"]
    assert all(o.endswith(":refused") for o in outcomes if not o.startswith(final))
    counts = store.analytics("t1", [week_of(NOW)])[week_of(NOW)]
    assert counts.get(final) == 1.0 and counts.get("shown") == 1.0


def test_rejected_pattern_is_not_suggested_again_during_its_cool_down(store: ApprovalStore) -> None:
    store.offer(RECORD, NOW)
    store.transition("t1", "sug-1", "rejected", NOW, by="u1", reason="not useful")
    outcome, stored = store.offer(RECORD, NOW + 10)
    assert outcome == "cooling" and stored.status == "rejected" and stored.reason == "not useful"
    store.client.delete(f"{store.namespace}:cooldown:t1:u1:sug-1")  # the cool-down is over
    outcome, stored = store.offer(RECORD, NOW + 4000)
    assert outcome == "offered" and stored.status == "suggested"


def test_undecided_suggestions_expire_and_invalid_ones_are_kept_but_never_listed(store: ApprovalStore) -> None:
    store.offer(RECORD, NOW)
    bad = replace(RECORD, suggestion_id="sug-2", reasons=("cycle: it would trigger itself",))
    assert store.offer(bad, NOW)[1].status == "invalid"
    assert [r.suggestion_id for r in store.open("t1")] == ["sug-1"]
    assert store.expire_due("t1", NOW + 100) == []
    expired = store.expire_due("t1", NOW + 601)
    assert [(e.record.suggestion_id, e.record.status) for e in expired] == [("sug-1", "expired")]
    assert store.get("t1", "sug-2").reasons == ("cycle: it would trigger itself",)
    with pytest.raises(IllegalTransition):
        store.transition("t1", "sug-2", "approved", NOW)


def test_analytics_count_shown_decisions_and_actions_saved_per_week(store: ApprovalStore) -> None:
    for i in range(3):
        store.offer(replace(RECORD, suggestion_id=f"s{i}"), NOW)
    store.transition("t1", "s0", "approved", NOW, by="u1")
    store.transition("t1", "s1", "rejected", NOW, by="u1")
    week = week_of(NOW)
    assert store.analytics("t1", [week])[week] == {"shown": 3.0, "approved": 1.0, "rejected": 1.0,
                                                   "actions_saved_per_week": 6.0}


def test_every_status_change_is_in_the_audit_trail_in_order(store: ApprovalStore) -> None:
    store.offer(RECORD, NOW)
    store.transition("t1", "sug-1", "rejected", NOW + 5, by="u1", reason="not useful")
    store.offer(RECORD, NOW + 6)  # cooling: no change, nothing audited
    store.transition("t1", "sug-1", "rejected", NOW + 7, by="u1")  # a repeated decision: no change either
    store.client.delete(f"{store.namespace}:cooldown:t1:u1:sug-1")
    store.offer(RECORD, NOW + 4000)
    store.expire_due("t1", NOW + 4000 + 601)
    store.offer(replace(RECORD, suggestion_id="sug-2", reasons=("cycle: a -> b -> a", "permission: never did x")),
                NOW)
    trail = [(a.from_, a.to, a.by, a.reason, a.at) for a in store.audit("t1", "sug-1")]
    assert trail == [("", "suggested", "automation", "", NOW),
                     ("suggested", "rejected", "u1", "not useful", NOW + 5),
                     ("rejected", "suggested", "automation", "", NOW + 4000),
                     ("suggested", "expired", "", "no decision in time", NOW + 4601)]
    assert [(a.to, a.reason) for a in store.audit("t1", "sug-2")] == [
        ("invalid", "cycle: a -> b -> a; permission: never did x")]
    assert store.audit("t1", "nope") == []
