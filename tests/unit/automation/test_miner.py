"""The miner on hand-made episodes with known patterns; the frequent-bigram baseline."""

from __future__ import annotations

from services.automation.miner import MinerConfig, bigram_baseline, is_subsequence, mine
from services.automation.sequences import Episode

WORKFLOW = ("move_item:group=done", "notify:user=owner", "archive:attachments")


def _ep(user: str, cond: str, steps: tuple[str, ...], i: int) -> Episode:
    return Episode("t", user, "task_created", cond, f"task-{i}", "p1", float(i), steps)


def _episodes() -> list[Episode]:
    eps = []
    for i in range(20):
        # u1 does the workflow after 18 of 20 bug tasks, with a stray action inside twice
        steps: tuple[str, ...] = WORKFLOW if i % 10 else ()
        if i in (3, 7):
            steps = (WORKFLOW[0], "set_field:due=+3d", *WORKFLOW[1:])
        eps.append(_ep("u1", "task_type=bug", steps, i))
        # every created task is also described by its priority: same steps, but 1 in 2 tasks are high
        if i % 2 == 0:
            eps.append(_ep("u1", "priority=PRIORITY_HIGH", steps, i))
        # u2 reacts at random: never the same two steps often enough
        eps.append(_ep("u2", "task_type=bug", (f"notify:channel=#{i % 7}", f"set_field:x={i % 5}"), i))
    return eps


def test_the_planted_pattern_is_found_with_its_support_and_confidence() -> None:
    found = mine(_episodes(), MinerConfig(min_support=4, min_confidence=0.5))
    assert [(p.user_id, p.condition, p.steps) for p in found] == [("u1", "task_type=bug", WORKFLOW)]
    p = found[0]
    assert (p.support, p.episodes) == (18, 20) and abs(p.confidence - 0.9) < 1e-9


def test_a_pattern_under_the_confidence_threshold_is_dropped() -> None:
    eps = [_ep("u1", "task_type=bug", WORKFLOW if i < 6 else (), i) for i in range(20)]
    assert mine(eps, MinerConfig(min_support=4, min_confidence=0.5)) == []
    assert len(mine(eps, MinerConfig(min_support=4, min_confidence=0.25))) == 1


def test_bigram_baseline_suggests_one_chain_per_trigger_without_confidence() -> None:
    chains = bigram_baseline(_episodes(), min_support=4)
    assert {(p.user_id, p.condition) for p in chains} == {("u1", "task_type=bug"), ("u1", "priority=PRIORITY_HIGH")}
    assert all(p.steps == WORKFLOW for p in chains)


def test_subsequence_allows_gaps_but_keeps_order() -> None:
    assert is_subsequence(("a", "c"), ("a", "b", "c"))
    assert not is_subsequence(("c", "a"), ("a", "b", "c"))
