"""Visibility (adversarially), online updates (closed form, order-free, once) and poison feedback."""

from __future__ import annotations

import numpy as np
import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.errors import InvalidArgument, NotFound
from mesh.events import InvalidEvent
from mesh.features import InMemoryAggregates
from services.personalization.linucb import closed_form
from services.personalization.recommend import RecommendRequest
from services.personalization.state import GLOBAL_ARM, PERSONALIZATION_REDUCERS, ArmState, arm_key, check_feedback
from tests.unit.personalization.helpers import NOW, ev, feedback, recommender, world


def _store(*tenants: str) -> InMemoryAggregates:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    for t in tenants:
        store.apply(world(t))
    return store


def _ask(rec: object, tenant: str, user: str, k: int = 5, **kw: object) -> tuple[str, ...]:
    out = rec.recommend(RecommendRequest(tenant, user, k, now=NOW, request_id=str(kw.pop("rid", "r")),  # type: ignore[attr-defined]
                                         **kw))  # type: ignore[arg-type]
    return tuple(out.item_ids)


def test_only_visible_open_tasks_of_the_tenant_are_recommended() -> None:
    store = _store("tenant-a", "tenant-b")
    store.apply([ev("tenant-b", e.TaskCreated(task_id="task-7", project_id="proj-a", task_type="bug"), 5)])
    rec = recommender(store)
    assert set(_ask(rec, "tenant-a", "alice")) == {"task-1", "task-3"}  # not done task-2, not bob's task-9
    assert "task-7" not in _ask(rec, "tenant-a", "alice", rid="x")  # same project id in another tenant
    assert set(_ask(rec, "tenant-a", "bob")) == {"task-9"}
    assert set(_ask(rec, "tenant-a", "alice", include_closed=True, rid="y")) == {"task-1", "task-2", "task-3"}


def test_leaving_a_project_hides_its_tasks_and_strangers_are_not_found() -> None:
    store = _store("tenant-a")
    store.apply([ev("tenant-a", e.ProjectUpdated(project_id="proj-a", member_ids=["bob"]), 30)])
    rec = recommender(store)
    assert set(_ask(rec, "tenant-a", "alice")) == set()
    assert set(_ask(rec, "tenant-a", "bob")) == {"task-1", "task-3", "task-9"}
    with pytest.raises(NotFound):
        _ask(rec, "tenant-a", "mallory")
    with pytest.raises(NotFound):
        _ask(rec, "tenant-b", "alice")  # a person of another tenant
    with pytest.raises(InvalidArgument):
        _ask(rec, "tenant-a", "alice", k=0)


def test_an_older_member_list_does_not_undo_a_newer_one() -> None:
    store = _store("tenant-a")
    store.apply([ev("tenant-a", e.ProjectUpdated(project_id="proj-a", member_ids=["bob"]), 30),
                 ev("tenant-a", e.ProjectUpdated(project_id="proj-a", member_ids=["alice", "bob"]), 25)])
    assert set(_ask(recommender(store), "tenant-a", "alice")) == set()


def _served_and_feedback(store: InMemoryAggregates, n: int) -> tuple[list[np.ndarray], list[float], list]:  # type: ignore[type-arg]
    rec = recommender(store)
    xs: list[np.ndarray] = []
    rs: list[float] = []
    events = []
    for i in range(n):
        out = rec.recommend(RecommendRequest("tenant-a", "alice", 2, now=NOW, request_id=f"q{i}"))
        p = out.prediction
        for j, item in enumerate(p.items):
            clicked = (i + j) % 3 == 0
            xs.append(np.asarray(p.contexts[j * p.context_dim:(j + 1) * p.context_dim]))
            rs.append(1.0 if clicked else 0.0)
            action = e.FEEDBACK_ACTION_CLICKED if clicked else e.FEEDBACK_ACTION_IGNORED
            events.append(feedback("tenant-a", out.envelope.event_id, "alice", item.item_id, action, 40 + i))
    return xs, rs, events


def test_feedback_updates_the_arm_to_the_closed_form_once_under_redelivery() -> None:
    store = _store("tenant-a")
    xs, rs, events = _served_and_feedback(store, 6)
    store.apply(events[:5])
    store.apply(events)  # redelivered: the first five are skipped
    store.apply(events[3:7])
    rec = recommender(store)
    arm = store.load(ArmState, "tenant-a", arm_key(rec.version, "0"))
    assert arm is not None and arm.updates == len(xs) and arm.clicks == sum(rs)
    stats = arm.stats(len(xs[0]), 1.0)
    assert np.allclose(stats.theta(), closed_form(np.stack(xs), np.array(rs), 1.0))
    pooled = store.load(ArmState, "tenant-a", arm_key(rec.version, GLOBAL_ARM))  # one segment: the same data
    assert pooled is not None and pooled.updates == arm.updates and np.allclose(pooled.a, arm.a)


def test_feedback_before_its_recommendation_settles_when_the_recommendation_arrives() -> None:
    source = _store("tenant-a")
    _, _, events = _served_and_feedback(source, 3)
    served = [env for env in _recommendations()]
    in_order, reversed_order = _store("tenant-a"), _store("tenant-a")
    in_order.apply(served)
    in_order.apply(events)
    # the other order: e.g. a rebuild reading the feedback topic before the predictions topic
    forged = [feedback("tenant-a", f.suggestion_feedback.suggestion_id, "bob", f.suggestion_feedback.item_id,
                       e.FEEDBACK_ACTION_CLICKED, 90) for f in events]  # someone else's clicks, early
    reversed_order.apply(forged + events)
    reversed_order.apply(served)
    version = recommender().version
    a = in_order.load(ArmState, "tenant-a", arm_key(version, "0"))
    b = reversed_order.load(ArmState, "tenant-a", arm_key(version, "0"))
    assert a is not None and b is not None and a.updates == len(events)
    assert np.allclose(a.a, b.a) and np.allclose(a.b, b.b) and a.updates == b.updates


def _recommendations() -> list:  # type: ignore[type-arg]
    """The same three recommendations _served_and_feedback made (same request ids: same event ids)."""
    rec = recommender(_store("tenant-a"))
    return [rec.recommend(RecommendRequest("tenant-a", "alice", 2, now=NOW, request_id=f"q{i}")).envelope
            for i in range(3)]


def test_a_click_after_an_ignore_credits_the_reward_without_counting_the_item_twice() -> None:
    store = _store("tenant-a")
    rec = recommender(store)
    out = rec.recommend(RecommendRequest("tenant-a", "alice", 1, now=NOW, request_id="one"))
    item = out.item_ids[0]
    store.apply([feedback("tenant-a", out.envelope.event_id, "alice", item, e.FEEDBACK_ACTION_IGNORED, 50),
                 feedback("tenant-a", out.envelope.event_id, "alice", item, e.FEEDBACK_ACTION_CLICKED, 51)])
    arm = store.load(ArmState, "tenant-a", arm_key(rec.version, "0"))
    x = np.asarray(out.prediction.contexts)
    assert arm is not None and arm.updates == 1
    assert np.allclose(arm.b, x)


def test_a_retried_request_gets_the_same_suggestion_and_slate() -> None:
    rec = recommender(_store("tenant-a"))
    a = rec.recommend(RecommendRequest("tenant-a", "alice", 2, now=NOW, request_id="same"))
    b = rec.recommend(RecommendRequest("tenant-a", "alice", 2, now=NOW, request_id="same"))
    assert a.envelope.event_id == b.envelope.event_id and a.item_ids == b.item_ids
    assert all(p > 0 for p in a.prediction.propensities)
    assert len(a.prediction.candidate_ids) == len(a.prediction.candidate_scores) == 2


@pytest.mark.parametrize("bad", [
    e.SuggestionFeedback(suggestion_id="s", capability="personalization", user_id="u", item_id="",
                         action=e.FEEDBACK_ACTION_CLICKED),
    e.SuggestionFeedback(suggestion_id="s", capability="personalization", user_id="u", item_id="t"),
    e.SuggestionFeedback(suggestion_id="s", capability="personalization", user_id="u", item_id="t", action=42),  # type: ignore[arg-type]
])
def test_unusable_personalization_feedback_is_poison(bad: e.SuggestionFeedback) -> None:
    with pytest.raises(InvalidEvent):
        check_feedback(ev("tenant-a", bad, 1))


def test_other_capabilities_feedback_is_not_ours_to_judge() -> None:
    check_feedback(ev("tenant-a", e.SuggestionFeedback(suggestion_id="s", capability="assignment", user_id="u"), 1))


def test_a_completion_before_the_creation_still_keeps_the_task_out() -> None:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    events = world("tenant-a")
    done = next(x for x in events if x.type == "task_completed")
    store.apply([done])  # out of order: the completion first
    store.apply([x for x in events if x is not done])
    rec = recommender(store)
    assert set(_ask(rec, "tenant-a", "alice")) == {"task-1", "task-3"}
    assert "task-2" in _ask(rec, "tenant-a", "alice", include_closed=True, rid="c")


def test_a_segment_without_enough_updates_of_its_own_scores_by_the_pooled_arm() -> None:
    from services.personalization.factors import PolicyModel, Segments, behaviour
    from services.personalization.linucb import LinUCBConfig
    from services.personalization.recommend import Recommender
    from services.personalization.state import PersonState

    store = _store("tenant-a")
    alice = store.load(PersonState, "tenant-a", "alice")
    bob = store.load(PersonState, "tenant-a", "bob")
    assert alice is not None and bob is not None
    model = PolicyModel("seg", None, Segments(np.stack([behaviour(bob), behaviour(alice)])))

    def rec(min_updates: int) -> Recommender:
        return Recommender(store, model, config=LinUCBConfig(alpha=0.5, epsilon=0.2, min_arm_updates=min_updates))

    out = rec(0).recommend(RecommendRequest("tenant-a", "bob", 1, now=NOW, request_id="b"))
    assert out.prediction.arm == "0"
    store.apply([feedback("tenant-a", out.envelope.event_id, "bob", out.item_ids[0], e.FEEDBACK_ACTION_CLICKED, 60)])

    def alice_scores(min_updates: int, rid: str) -> list[float]:
        reply = rec(min_updates).recommend(RecommendRequest("tenant-a", "alice", 2, now=NOW, request_id=rid))
        assert reply.prediction.arm == "1"
        return list(reply.prediction.candidate_scores)

    fresh = alice_scores(0, "a0")  # her segment's own (empty) statistics
    pooled = alice_scores(5, "a5")  # fewer than 5 updates of its own: bob's click, pooled
    assert not np.allclose(fresh, pooled)


def test_forged_feedback_moves_no_statistic() -> None:
    """Feedback naming another tenant's suggestion, an item that was not shown, or sent by someone other than
    the person the slate was shown to credits nothing."""
    store = _store("tenant-a", "tenant-b")
    rec = recommender(store)
    out = rec.recommend(RecommendRequest("tenant-a", "alice", 1, now=NOW, request_id="forge"))
    shown = out.item_ids[0]
    not_shown = next(i for i in ("task-1", "task-3") if i != shown)
    sid = out.envelope.event_id
    store.apply([feedback("tenant-b", sid, "alice", shown, e.FEEDBACK_ACTION_CLICKED, 50),
                 feedback("tenant-a", sid, "alice", not_shown, e.FEEDBACK_ACTION_CLICKED, 51),
                 feedback("tenant-a", sid, "bob", shown, e.FEEDBACK_ACTION_CLICKED, 52)])
    for tenant in ("tenant-a", "tenant-b"):
        for arm in ("0", GLOBAL_ARM):
            assert store.load(ArmState, tenant, arm_key(rec.version, arm)) is None
    store.apply([feedback("tenant-a", sid, "alice", shown, e.FEEDBACK_ACTION_CLICKED, 53)])
    arm_a = store.load(ArmState, "tenant-a", arm_key(rec.version, "0"))
    assert arm_a is not None and arm_a.updates == 1 and arm_a.clicks == 1
