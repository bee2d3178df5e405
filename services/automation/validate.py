"""Safety validation of a candidate automation, before anyone sees it. Rules (each a function returning
the reasons it fails, empty when it passes):

- ``permission``: the actor may perform every action: they did that kind of action by hand on a task of
  one of the automation's projects (permissions as the events show them), or they are an admin;
- ``cycle``: no chain with existing automations leads back to the candidate (A triggers B triggers A), the
  candidate triggering itself included;
- ``blast_radius``: in the dry run, the most items it would have touched in one day stays under a cap;
- ``scope``: every project it acts in or names (``project=<id>`` in a step) belongs to the tenant
  (else cross-tenant) and is one the actor can see (else cross-project);
- the dry run itself (:func:`dry_run`) replays the last weeks of the tenant's trigger events: how often the
  automation would have fired, on which tasks, what it would have changed, and how many of those firings
  the actor followed by hand (the manual actions it saves).

A failing candidate keeps its reasons (:class:`Verdict`) and is never shown.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from services.automation.sequences import burst, conditions, projects_of
from services.automation.state import Automation, FactStore, PersonFacts, TaskFacts, TenantFacts

Rule = Literal["permission", "cycle", "blast_radius", "cross_tenant", "cross_project"]
DAY_S = 86400.0
ADMIN_ROLES = frozenset({"admin", "owner", "workspace_admin"})


@dataclass(frozen=True)
class AutomationSpec:
    """What an automation would do: on ``trigger_type`` with ``condition`` ("" = any) in ``projects``,
    perform ``steps`` (``"action:detail"``) as ``actor_id``."""

    tenant_id: str
    actor_id: str
    trigger_type: str
    condition: str
    steps: tuple[str, ...]
    projects: tuple[str, ...]
    automation_id: str = "candidate"


@dataclass(frozen=True)
class Reason:
    rule: Rule
    message: str


@dataclass(frozen=True)
class DryRun:
    since: datetime
    until: datetime
    firings: int
    tasks: int
    peak_items_per_day: int
    changes: int
    """Step executions it would have made (firings x steps)."""
    followed_by_hand: int
    """Firings the actor followed with the same steps by hand: manual actions it saves / len(steps)."""
    sample: tuple[str, ...]
    """A few "task: steps" lines of what it would have changed."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[Reason, ...]
    dry_run: DryRun
    seconds: float

    @property
    def rules(self) -> frozenset[Rule]:
        return frozenset(r.rule for r in self.reasons)


@dataclass(frozen=True)
class ValidatorConfig:
    dry_run_weeks: float = 4.0
    max_items_per_day: int = 100
    """Blast-radius cap: most items an automation may touch in one day of the dry run (a bulk step
    touches every task of its scope per firing)."""


# --------------------------------------------------------------------------- what actions cause
def parse_condition(condition: str) -> dict[str, str]:
    """``"to_status=X,task_type=bug"`` -> ``{"to_status": "X", "task_type": "bug"}``."""
    return dict(part.split("=", 1) for part in condition.replace(" ", ",").split(",") if "=" in part)


def _verb_detail(step: str) -> tuple[str, str]:
    """``"move_item:group=done"`` -> (move_item, group=done); free text ``"move to archive"`` -> (move, ...)."""
    if ":" in step:
        verb, _, detail = step.partition(":")
        return verb.strip().lower(), detail.strip().lower()
    verb, _, detail = step.strip().lower().partition(" ")
    return verb, detail


def emitted(step: str) -> list[tuple[str, dict[str, str]]]:
    """The trigger events an action causes, with the fields it sets. A template subtask is created with
    default fields (type ``subtask``, medium priority); moving to the done group completes the task; an
    assignment to a team (``assign:team=x``) assigns no person (one to a person may be to the actor)."""
    verb, detail = _verb_detail(step)
    if verb in ("create_subtask", "create", "duplicate"):
        return [("task_created", {"task_type": "subtask", "priority": "PRIORITY_MEDIUM"})]
    if verb in ("assign", "reassign"):
        team = parse_condition(detail).get("team", "")
        # assigned to a team: not to a person, so never the "assigned to me" of a person's trigger
        return [("task_assigned", {"assignee_id": f"team:{team}"} if team else {})]
    if verb in ("move_item", "move", "set_field", "set", "complete", "close"):
        if "group=done" in detail or "status=done" in detail or detail in ("to done", "done") or verb in (
                "complete", "close"):
            return [("task_status_changed", {"to_status": "TASK_STATUS_DONE"})]
        if "status=" in detail:
            status = detail.split("status=", 1)[1].split(",")[0].upper()
            status = status if status.startswith("TASK_STATUS_") else f"TASK_STATUS_{status}"
            return [("task_status_changed", {"to_status": status})]
    return []


def items_per_firing(step: str, scope_tasks: int) -> int:
    """Items one execution of a step touches besides the trigger's task: the whole scope for a bulk step
    (``scope=project``, ``items=all``), else none."""
    _, detail = _verb_detail(step)
    return scope_tasks if ("scope=" in detail or "=all" in detail) else 0


def triggers_on(trigger_type: str, condition: str, event_type: str, fields: dict[str, str]) -> bool:
    """Would an event of ``event_type`` with ``fields`` fire a trigger? A condition on a field the event
    does not set is assumed to match (the safe side for a cycle check)."""
    if trigger_type != event_type:
        return False
    cond = {k: v for k, v in parse_condition(condition).items() if k != "project"}
    return all(fields.get(k, v).upper() == v.upper() for k, v in cond.items())


@dataclass(frozen=True)
class _Node:
    name: str
    trigger_type: str
    condition: str
    actions: tuple[str, ...]
    projects: frozenset[str]


def _node_of(a: Automation) -> _Node:
    kind, _, condition = a.trigger.partition(" ")
    project = parse_condition(condition).get("project", "")
    return _Node(a.automation_id, kind, condition, tuple(a.actions), frozenset({project} if project else ()))


def _edges(src: _Node, dst: _Node) -> bool:
    if src.projects and dst.projects and not src.projects & dst.projects:
        return False
    # moving a task to the status it was just changed to changes nothing: no event
    already = parse_condition(src.condition).get("to_status", "") if src.trigger_type == "task_status_changed" else ""
    return any(triggers_on(dst.trigger_type, dst.condition, kind, fields)
               for step in src.actions for kind, fields in emitted(step)
               if not (already and fields.get("to_status", "").upper() == already.upper()))


# --------------------------------------------------------------------------- rules
def check_cycle(spec: AutomationSpec, existing: Sequence[Automation]) -> list[Reason]:
    me = _Node(spec.automation_id, spec.trigger_type, spec.condition, spec.steps, frozenset(spec.projects))
    nodes = [me, *(_node_of(a) for a in existing if a.automation_id != spec.automation_id)]
    path: dict[str, str] = {me.name: ""}
    frontier = [me]
    while frontier:
        node = frontier.pop()
        for nxt in nodes:
            if not _edges(node, nxt):
                continue
            if nxt.name == me.name:
                chain = [node.name]
                while path.get(chain[-1]):
                    chain.append(path[chain[-1]])
                names = " -> ".join([me.name, *reversed(chain[:-1]), me.name])
                return [Reason("cycle", f"it would trigger itself: {names}")]
            if nxt.name not in path:
                path[nxt.name] = node.name
                frontier.append(nxt)
    return []


def check_permission(spec: AutomationSpec, person: PersonFacts, tasks: dict[str, TaskFacts]) -> list[Reason]:
    if person.role in ADMIN_ROLES:
        return []
    scope = set(spec.projects)
    done = {a.action for a in person.actions.values()
            if not scope or (tasks[a.task_id].project_id if a.task_id in tasks else "") in scope}
    missing = sorted({s.split(":", 1)[0] for s in spec.steps} - done)
    return [Reason("permission", f"{spec.actor_id} never performed {m!r} in {sorted(scope)}") for m in missing]


def named_projects(step: str) -> list[str]:
    """Projects a step acts in besides the trigger's (``move_item:project=<id>``)."""
    _, _, detail = step.partition(":")
    return [v for k, v in parse_condition(detail).items() if k == "project"]


def check_scope(spec: AutomationSpec, tenant: TenantFacts, visible: set[str]) -> list[Reason]:
    reasons: list[Reason] = []
    targets = {*spec.projects, *(p for s in spec.steps for p in named_projects(s))}
    for project in sorted(targets):
        if project not in tenant.projects:
            reasons.append(Reason("cross_tenant", f"project {project} is not one of tenant {spec.tenant_id}'s"))
        elif project not in visible:
            reasons.append(Reason("cross_project", f"{spec.actor_id} cannot see project {project}"))
    if not targets:
        reasons.append(Reason("cross_project", "no project scope: it would act in every project of the tenant"))
    return reasons


def dry_run(spec: AutomationSpec, tenant: TenantFacts, tasks: dict[str, TaskFacts], person: PersonFacts,
            weeks: float) -> DryRun:
    scope = set(spec.projects) or set(tenant.projects)
    triggers = [(trig, task) for task in tasks.values() if task.project_id in scope
                for trig in task.triggers.values() if trig.kind == spec.trigger_type]
    until = max((t.at for t, _ in triggers), default=time.time())
    since = until - weeks * 7 * DAY_S
    by_task: dict[str, list[float]] = {}
    actions = sorted(person.actions.values(), key=lambda a: a.at)
    fired: list[tuple[float, str]] = []
    followed = 0
    for trig, task in triggers:
        if trig.at < since or (spec.condition and spec.condition not in conditions(trig, task, spec.actor_id)):
            continue
        fired.append((trig.at, task.entity_id))
        by_task.setdefault(task.entity_id, []).append(trig.at)
        steps = burst([a for a in actions if a.task_id == task.entity_id], trig.at)
        followed += int(_contains(steps, spec.steps))
    scope_tasks = sum(len(tenant.projects.get(p, [])) for p in scope)
    per_firing = 1 + sum(items_per_firing(s, scope_tasks) for s in spec.steps)
    per_day: Counter[int] = Counter()
    for at, _ in fired:
        per_day[int(at // DAY_S)] += per_firing
    sample = tuple(f"{t}: {', '.join(spec.steps)}" for _, t in sorted(fired)[:3])
    return DryRun(datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC), len(fired),
                  len(by_task), max(per_day.values(), default=0), len(fired) * len(spec.steps), followed, sample)


def _contains(steps: Sequence[str], pattern: Sequence[str]) -> bool:
    it = iter(steps)
    return all(any(x == y for y in it) for x in pattern)


@dataclass
class Validator:
    """All rules plus the dry run, over one tenant's facts."""

    facts: FactStore
    config: ValidatorConfig = field(default_factory=ValidatorConfig)

    def validate(self, spec: AutomationSpec) -> Verdict:
        start = time.perf_counter()
        tenant = self.facts.tenant(spec.tenant_id)
        tasks = self.facts.tasks(spec.tenant_id, sorted({t for ids in tenant.projects.values() for t in ids}))
        person = self.facts.people(spec.tenant_id, [spec.actor_id])[0]
        run = dry_run(spec, tenant, tasks, person, self.config.dry_run_weeks)
        reasons = [*check_permission(spec, person, tasks),
                   *check_cycle(spec, list(tenant.automations.values())),
                   *check_scope(spec, tenant, projects_of(person, tasks))]
        if run.peak_items_per_day > self.config.max_items_per_day:
            reasons.append(Reason("blast_radius", f"it would have touched {run.peak_items_per_day} items in one "
                                                  f"day (cap {self.config.max_items_per_day})"))
        return Verdict(not reasons, tuple(reasons), run, time.perf_counter() - start)
