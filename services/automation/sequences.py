"""Per-person, per-trigger action sequences, read from the automation facts.

An *episode* is one trigger occurrence a person could have reacted to — a task event (created, status
changed, assigned to them) in a project they work in — and the *steps* they then took by hand on that task:
the first burst of their manual board actions on it after the trigger (within ``window_s``; a gap over
``gap_s`` ends the burst). Episodes with no steps count too: they are the denominator of confidence.

Each trigger occurrence is described by every condition it satisfies (``task_type=bug`` and
``priority=PRIORITY_HIGH`` for a created task, ``to_status=...`` with and without the task type for a
status change, ``assignee_id=self`` for an assignment to that person): the miner keeps, per person and
steps, the condition under which the steps are most reliably repeated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mesh.events import Envelope
from services.automation.state import Action, FactStore, PersonFacts, TaskFacts, Trigger

WINDOW_S = 4 * 24 * 3600.0
"""Steps more than four days after the trigger are not its reaction (covers a weekend in between)."""
GAP_S = 15 * 60.0
"""A pause of more than 15 minutes between two actions ends the burst."""


@dataclass(frozen=True)
class Episode:
    tenant_id: str
    user_id: str
    trigger_type: str
    condition: str
    task_id: str
    project_id: str
    at: float
    steps: tuple[str, ...]

    @property
    def trigger_token(self) -> str:
        return trigger_token(self.trigger_type, self.condition)


def trigger_token(trigger_type: str, condition: str) -> str:
    return f"{trigger_type}|{condition}"


def conditions(trigger: Trigger, task: TaskFacts, user_id: str) -> list[str]:
    """Every condition of the trigger occurrence, as the person sees it."""
    if trigger.kind == "task_created":
        return [c for c in (f"task_type={task.task_type}" if task.task_type else "",
                            f"priority={task.priority}" if task.priority else "") if c]
    if trigger.kind == "task_status_changed":
        out = [f"to_status={trigger.status}"]
        return out + ([f"to_status={trigger.status},task_type={task.task_type}"] if task.task_type else [])
    if trigger.kind == "task_assigned" and trigger.assignee == user_id:
        return ["assignee_id=self"]
    return []


def burst(actions: Sequence[Action], after: float, window_s: float = WINDOW_S, gap_s: float = GAP_S,
          before: float = float("inf")) -> tuple[str, ...]:
    """Tokens of the first burst of ``actions`` (time-sorted, one task) after ``after``; the burst must
    start before ``before`` (the next trigger of the same kind on the task: the burst is that one's)."""
    steps: list[str] = []
    last = after
    for a in actions:
        if a.at <= after:
            continue
        if (not steps and (a.at > after + window_s or a.at >= before)) or (steps and a.at - last > gap_s):
            break
        steps.append(a.token)
        last = a.at
    return tuple(steps)


def projects_of(person: PersonFacts, tasks: dict[str, TaskFacts]) -> set[str]:
    """The projects a person can see: member of, or worked on one of its tasks."""
    out = set(person.member_of)
    for task_id, project_id in person.touched.items():
        known = tasks.get(task_id)
        project = project_id or (known.project_id if known else "")
        if project:
            out.add(project)
    return out


def person_episodes(tenant_id: str, person: PersonFacts, tasks: dict[str, TaskFacts],
                    by_project: dict[str, list[str]], since: float = 0.0, until: float = float("inf")
                    ) -> Iterator[Episode]:
    by_task: dict[str, list[Action]] = defaultdict(list)
    for _, action in sorted(person.actions.items(), key=lambda kv: (kv[1].at, kv[0])):
        by_task[action.task_id].append(action)
    for project_id in sorted(projects_of(person, tasks)):
        for task_id in by_project.get(project_id, []):
            task = tasks.get(task_id)
            if task is None:
                continue
            ordered = [t for _, t in sorted(task.triggers.items(), key=lambda kv: (kv[1].at, kv[0]))]
            for i, trig in enumerate(ordered):
                if not since <= trig.at < until:
                    continue
                conds = conditions(trig, task, person.entity_id)
                # a later trigger of the same kind (in review -> done) takes the steps that follow it
                nxt = next((t.at for t in ordered[i + 1:] if t.kind == trig.kind), float("inf"))
                steps = burst(by_task.get(task_id, []), trig.at, before=nxt) if conds else ()
                for cond in conds:
                    yield Episode(tenant_id, person.entity_id, trig.kind, cond, task_id, project_id, trig.at, steps)


def episodes(facts: FactStore, tenant_id: str, since: float = 0.0, until: float = float("inf")
             ) -> list[Episode]:
    """Every episode of a tenant whose trigger happened in ``[since, until)`` (epoch seconds)."""
    tenant = facts.tenant(tenant_id)
    task_ids = sorted({t for ids in tenant.projects.values() for t in ids})
    tasks = facts.tasks(tenant_id, task_ids)
    out: list[Episode] = []
    for person in facts.people(tenant_id, tenant.people):
        out.extend(person_episodes(tenant_id, person, tasks, tenant.projects, since, until))
    return out


def episodes_of(events: Sequence[Envelope]) -> list[Episode]:
    """The episodes of every tenant of a time-ordered event stream (facts rebuilt in memory)."""
    facts = FactStore()
    for i in range(0, len(events), 1000):
        facts.apply(events[i:i + 1000])
    return [e for t in facts.tenants() for e in episodes(facts, t)]
