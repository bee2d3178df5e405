"""Facts through the mesh aggregate store: once per event, independent of arrival order; episodes."""

from __future__ import annotations

import random
from pathlib import Path

from services.automation.sequences import burst, episodes
from services.automation.state import Action, FactStore
from tests.unit.automation._events import WORKFLOW, planted_stream


def _snapshot(facts: FactStore) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted((e.user_id, e.condition, e.task_id, e.steps) for e in episodes(facts, "t1"))


def test_episodes_follow_the_triggers_of_the_persons_projects() -> None:
    facts = FactStore()
    facts.apply(planted_stream().events)
    eps = [e for e in episodes(facts, "t1") if e.user_id == "u1" and e.condition == "task_type=bug"]
    assert len(eps) == 12 and sum(e.steps == WORKFLOW for e in eps) == 10
    # u1 never touched p2: no episode of u1 in it; u2 sees both projects
    assert {e.project_id for e in episodes(facts, "t1") if e.user_id == "u1"} == {"p1"}


def test_redelivered_and_reordered_events_give_the_same_facts() -> None:
    events = planted_stream().events
    once = FactStore()
    once.apply(events)
    shuffled = list(events)
    random.Random(3).shuffle(shuffled)
    again = FactStore()
    for i in range(0, len(shuffled), 7):
        again.apply(shuffled[i:i + 7])
    applied = again.apply(events[:20])  # a redelivery changes nothing
    assert applied.applied == 0 and applied.duplicates == 20
    assert _snapshot(again) == _snapshot(once)


def test_a_burst_ends_at_a_long_pause_and_ignores_what_came_before() -> None:
    acts = [Action(at=t, task_id="x", action="a", detail=str(t)) for t in (5.0, 20.0, 80.0, 2000.0)]
    assert burst(acts, after=10.0, gap_s=100.0) == ("a:20.0", "a:80.0")
    assert burst(acts, after=10.0, window_s=5.0) == ()


def test_mining_is_incremental_and_the_facts_rebuild_from_the_event_log(tmp_path: Path) -> None:
    from mesh.features import EventLog, InMemoryAggregates, LoggedEvent, rebuild
    from services.automation.miner import mine
    from services.automation.state import AUTOMATION_REDUCERS

    events = planted_stream().events
    live = FactStore()
    half = len(events) // 2
    live.apply(events[:half])
    early = mine(episodes(live, "t1"))  # a pass while the stream is still coming
    live.apply(events[half:])
    found = mine(episodes(live, "t1"))
    assert [(p.user_id, p.steps, p.support) for p in found] == [("u1", WORKFLOW, 10)]  # all of the stream...
    assert all(p.support < 10 for p in early)  # ...and the earlier pass saw only the facts that had come
    EventLog(tmp_path / "events").append([LoggedEvent(e) for e in events])
    rebuilt = FactStore(InMemoryAggregates(AUTOMATION_REDUCERS))
    done = rebuild(rebuilt.store, [EventLog(tmp_path / "events").read()])
    assert done.applied == len(events) and rebuilt.store.built()
    assert _snapshot(rebuilt) == _snapshot(live) and mine(episodes(rebuilt, "t1")) == found
