"""Assignment, durations and slips have the causes the truth says, visible in the emitted events."""

from __future__ import annotations

import numpy as np

from simulator._vocab import TYPE_HOURS
from simulator._world import base_hours
from tests.unit.simulator.conftest import Run


def test_emitted_assignees_are_the_truths_chosen_ones(world_run: Run) -> None:
    chosen = {a.task_id: a.chosen for a in world_run.truth.assignments}
    emitted = {env.task_assigned.task_id: env.task_assigned.assignee_id
               for env in world_run.events if env.type == "task_assigned"}
    assert emitted and all(chosen[t] == a for t, a in emitted.items())


def test_skill_matched_people_are_assigned_more_often_than_chance(world_run: Run) -> None:
    """From the stream alone: skills from user_joined, candidates from project members."""
    skills: dict[str, dict[str, int]] = {}
    members: dict[str, list[str]] = {}
    required: dict[str, list[str]] = {}
    hits, chance = [], []
    for env in world_run.events:
        if env.type == "user_joined":
            skills[env.user_joined.user_id] = {s.name: s.level for s in env.user_joined.skills}
        elif env.type == "project_created":
            members[env.project_created.project_id] = list(env.project_created.member_ids)
        elif env.type == "task_created":
            required[env.task_created.task_id] = list(env.task_created.required_skills)
        elif env.type == "task_assigned":
            a = env.task_assigned
            cands = [u for u in members[a.project_id] if u in skills]
            score = {u: sum(skills[u].get(s, 0) for s in required[a.task_id]) for u in cands}
            top = max(score.values())
            if top == 0 or a.assignee_id not in score:
                continue
            best = [u for u in cands if score[u] == top]
            hits.append(a.assignee_id in best)
            chance.append(len(best) / len(cands))
    assert len(hits) > 200
    assert np.mean(hits) > 2.0 * np.mean(chance)


def test_utility_ranks_the_chosen_assignee_high(world_run: Run) -> None:
    percentiles = []
    for a in world_run.truth.assignments:
        utilities = np.array([c.utility for c in a.candidates])
        mine = next(c.utility for c in a.candidates if c.user_id == a.chosen)
        percentiles.append(float(np.mean(utilities <= mine)))
    assert np.mean(percentiles) > 0.75  # random choice would give about 0.5


def test_loaded_people_are_assigned_less(world_run: Run) -> None:
    chosen_load, others_load = [], []
    for a in world_run.truth.assignments:
        for c in a.candidates:
            (chosen_load if c.user_id == a.chosen else others_load).append(c.load_ratio)
    assert np.mean(chosen_load) < np.mean(others_load)


def test_durations_follow_complexity_and_assignee_speed(world_run: Run) -> None:
    """Regress log(actual hours from task_completed) on log size, log kind and log speed (from truth)."""
    truth = {t.task_id: t for t in world_run.truth.tasks}
    rows, y = [], []
    for env in world_run.events:
        if env.type == "task_completed":
            t = truth[env.task_completed.task_id]
            rows.append([1.0, np.log(base_hours(t.points)), np.log(TYPE_HOURS[t.task_type]), np.log(t.assignee_speed)])
            y.append(np.log(env.task_completed.actual_hours))
    x, target = np.array(rows), np.array(y)
    assert len(target) > 300
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    assert coef[1] > 0.6  # bigger tasks take longer
    assert coef[3] < -0.5  # faster people take less time
    assert np.corrcoef(x[:, 1], target)[0, 1] > 0.4


def test_durations_are_heavy_tailed(world_run: Run) -> None:
    hours = np.array([t.true_hours for t in world_run.truth.tasks])
    assert np.mean(hours) > 1.1 * np.median(hours)
    assert np.percentile(hours, 99) > 4 * np.median(hours)


def test_slipping_projects_take_longer_and_move_their_deadline(world_run: Run) -> None:
    slips = {p.project_id: p.slips for p in world_run.truth.projects}
    assert any(slips.values()) and not all(slips.values())
    ratio: dict[bool, list[float]] = {True: [], False: []}
    for t in world_run.truth.tasks:
        expected = base_hours(t.points) * TYPE_HOURS[t.task_type] / t.assignee_speed
        ratio[slips[t.project_id]].append(t.true_hours / expected)
    assert np.median(ratio[True]) > 1.2 * np.median(ratio[False])
    moved = {env.project_updated.project_id for env in world_run.events if env.type == "project_updated"}
    assert moved and all(slips[p] for p in moved)


def test_duplicates_share_their_facts(world_run: Run) -> None:
    text = {env.task_created.task_id: env.task_created.title.lower() + " " + env.task_created.description.lower()
            for env in world_run.events if env.type == "task_created"}
    pairs = [(t.task_id, t.duplicate_of) for t in world_run.truth.tasks if t.duplicate_of]
    assert len(pairs) > 10

    def jaccard(a: str, b: str) -> float:
        sa, sb = set(a.split()), set(b.split())
        return len(sa & sb) / len(sa | sb)

    ids = sorted(text)
    rng = np.random.default_rng(0)
    random_pairs = [(ids[int(i)], ids[int(j)]) for i, j in rng.integers(len(ids), size=(200, 2))]
    dup = np.mean([jaccard(text[a], text[b]) for a, b in pairs if a in text and b in text])
    base = np.mean([jaccard(text[a], text[b]) for a, b in random_pairs])
    assert dup > base + 0.15
    assert len({text[a].split(".")[0] for a, _ in pairs}) > 0.9 * len(pairs)  # paraphrases, not copies
