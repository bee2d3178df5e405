"""The personalization service's state: who sees what (people, projects, tasks), what people look at
(views), what it served, and the bandit's statistics; one reducer table applied through the mesh's
exactly-once stores (``mesh.features``: Redis in the service, memory in the simulation and tests).

Every update is order-independent (sets, counters, last-writer-wins stamps, maxima), so a live service, a
rebuild from the topics and a time-ordered replay end in the same state:
- a person sees the tasks of the projects whose member list names them (``project_created``/``_updated``,
  last writer wins on the list); a task is closed once it is completed or moved to done;
- views count per person x task, project and type, and per task (popularity);
- a recommendation (a ``personalization_prediction``, applied by the service when it answers and again,
  as a no-op, when read back from its topic) stores the context of each shown item;
- a ``suggestion_feedback`` stores its reward (clicked/accepted = 1, else 0; the maximum over an item's
  feedback). Whichever of the two arrives second settles the bandit: the arm ``policy_version:arm`` gets
  ``A += x x^T`` once per shown item and ``b += r x`` for its best reward (and so does the version's global
  arm, which segments with little data of their own score by): the same statistics whatever
  the order, and (the store's applied-marks) the same under redelivery. A new policy version starts
  empty statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, InvalidEvent
from mesh.features import Ctx, EntityState, Reducers, state_key
from services.personalization.linucb import ArmStats

REWARDING = (e.FEEDBACK_ACTION_CLICKED, e.FEEDBACK_ACTION_ACCEPTED)
CAPABILITY = "personalization"


class PersonState(EntityState):
    kind: ClassVar[str] = "personalization_person"

    joined: bool = False
    projects: list[str] = Field(default_factory=list)
    """Projects whose member list names the person (sorted)."""
    task_views: dict[str, int] = Field(default_factory=dict)
    project_views: dict[str, int] = Field(default_factory=dict)
    type_views: dict[str, int] = Field(default_factory=dict)
    dwell_seconds: float = 0.0
    clicks: int = 0
    feedback: int = 0


class ProjectState(EntityState):
    kind: ClassVar[str] = "personalization_project"

    members: list[str] = Field(default_factory=list)
    tasks: dict[str, float] = Field(default_factory=dict)
    """task id -> creation time (epoch seconds) of every task of the project."""
    open: dict[str, float] = Field(default_factory=dict)
    """The same for the tasks not closed: what a request reads (closed tasks pile up; they are not read)."""


class ItemState(EntityState):
    """A task as a recommendable item."""

    kind: ClassVar[str] = "personalization_item"

    project_id: str = ""
    task_type: str = ""
    priority: int = 0
    title: str = ""
    created_at: float = 0.0
    created: bool = False
    closed: bool = False
    assignee_id: str = ""
    views: int = 0


class ServedState(EntityState):
    """One recommendation (entity id = its event id = the suggestion id) and the feedback on it."""

    kind: ClassVar[str] = "personalization_served"

    user_id: str = ""
    policy_version: str = ""
    arm: str = ""
    contexts: dict[str, list[float]] = Field(default_factory=dict)
    """shown item id -> the context it was scored with."""
    rewards: dict[str, float] = Field(default_factory=dict)
    """item id -> best reward of the served person's feedback so far (feedback by anyone else is ignored)."""
    pending: dict[str, dict[str, float]] = Field(default_factory=dict)
    """person -> item -> best reward: feedback that arrived before the recommendation (whose person is not
    known yet); the served person's moves to ``rewards`` when it arrives, the rest is dropped."""
    credited: dict[str, float] = Field(default_factory=dict)
    """item id -> reward already added to the arm's statistics."""


class ArmState(EntityState):
    """LinUCB statistics of one arm of one policy version (entity id ``version:arm``)."""

    kind: ClassVar[str] = "personalization_arm"

    dim: int = 0
    a: list[float] = Field(default_factory=list)
    """A - ridge * I, row-major (the ridge is the policy's, applied when read)."""
    b: list[float] = Field(default_factory=list)
    updates: int = 0
    clicks: int = 0

    def stats(self, dim: int, ridge: float) -> ArmStats:
        if self.dim != dim:
            return ArmStats(dim, ridge)
        return ArmStats(dim, ridge, np.asarray(self.a).reshape(dim, dim) + ridge * np.eye(dim), np.asarray(self.b))


GLOBAL_ARM = "*"
"""Every feedback of a policy version also credits this arm: what a segment with little data scores by."""


def arm_key(policy_version: str, arm: str) -> str:
    return f"{policy_version}:{arm}"


def _save(ctx: Ctx, state: EntityState) -> None:
    state.touch(ctx.at)
    ctx.txn.put(state)


def _members(ctx: Ctx, project_id: str, member_ids: Sequence[str]) -> None:
    project = ctx.txn.get(ProjectState, ctx.tenant, project_id)
    if not member_ids or not project.newer("members", ctx.stamp):
        return
    before, after = set(project.members), set(member_ids)
    project.members = sorted(after)
    _save(ctx, project)
    for user_id in before ^ after:
        person = ctx.txn.get(PersonState, ctx.tenant, user_id)
        projects = set(person.projects)
        if user_id in after:
            projects.add(project_id)
        else:
            projects.discard(project_id)
        person.projects = sorted(projects)
        _save(ctx, person)


def _task_created(ctx: Ctx, env: Envelope) -> None:
    p = env.task_created
    item = ctx.txn.get(ItemState, ctx.tenant, p.task_id)
    item.created, item.project_id = True, item.project_id or p.project_id
    if item.newer("created", ctx.stamp):
        item.task_type, item.priority, item.title = p.task_type, int(p.priority), p.title
        item.created_at = ctx.at.timestamp()
    _save(ctx, item)
    project = ctx.txn.get(ProjectState, ctx.tenant, p.project_id)
    project.tasks[p.task_id] = ctx.at.timestamp()
    if not item.closed:  # a completion that arrived first already closed it
        project.open[p.task_id] = ctx.at.timestamp()
    _save(ctx, project)


def _closed(ctx: Ctx, task_id: str, project_id: str) -> None:
    item = ctx.txn.get(ItemState, ctx.tenant, task_id)
    item.closed, item.project_id = True, item.project_id or project_id
    _save(ctx, item)
    if item.project_id:
        project = ctx.txn.get(ProjectState, ctx.tenant, item.project_id)
        if project.open.pop(task_id, None) is not None:
            _save(ctx, project)


def _status(ctx: Ctx, env: Envelope) -> None:
    p = env.task_status_changed
    if p.to_status == e.TASK_STATUS_DONE:
        _closed(ctx, p.task_id, p.project_id)


def _assigned(ctx: Ctx, env: Envelope) -> None:
    p = env.task_assigned
    item = ctx.txn.get(ItemState, ctx.tenant, p.task_id)
    if item.newer("assignee", ctx.stamp):
        item.assignee_id = p.assignee_id
        _save(ctx, item)


def _viewed(ctx: Ctx, env: Envelope) -> None:
    p = env.task_viewed
    item = ctx.txn.get(ItemState, ctx.tenant, p.task_id)
    item.views += 1
    _save(ctx, item)
    person = ctx.txn.get(PersonState, ctx.tenant, p.user_id)
    person.task_views[p.task_id] = person.task_views.get(p.task_id, 0) + 1
    project = p.project_id or item.project_id
    person.project_views[project] = person.project_views.get(project, 0) + 1
    # the type is known once the task's creation is applied; views before it count by project only
    if item.task_type:
        person.type_views[item.task_type] = person.type_views.get(item.task_type, 0) + 1
    person.dwell_seconds += max(p.dwell_seconds, 0.0)
    _save(ctx, person)


def _joined(ctx: Ctx, env: Envelope) -> None:
    person = ctx.txn.get(PersonState, ctx.tenant, env.user_joined.user_id)
    person.joined = True
    _save(ctx, person)


def _credit(arm: ArmState, vec: np.ndarray, reward: float, done: float | None) -> None:
    """A += x x^T the first time an item is credited; b += (reward - what was credited before) x."""
    if arm.dim != vec.shape[0]:
        arm.dim, arm.a, arm.b = vec.shape[0], [0.0] * vec.shape[0] ** 2, [0.0] * vec.shape[0]
    a, b = np.asarray(arm.a), np.asarray(arm.b)
    if done is None:
        a = a + np.outer(vec, vec).ravel()
        arm.updates += 1
    arm.a, arm.b = a.tolist(), (b + (reward - (done or 0.0)) * vec).tolist()
    arm.clicks += int(reward > 0 and not done)


def _settle(ctx: Ctx, served: ServedState) -> None:
    """Credit the segment's arm and the version's global arm with every shown item that has feedback and is
    not (fully) credited yet."""
    due = [(item_id, reward) for item_id, reward in sorted(served.rewards.items())
           if item_id in served.contexts and reward > served.credited.get(item_id, -1.0)]
    if not served.policy_version or not due:
        return  # (a recommendation without feedback yet reads no arm: one round trip less per Recommend)
    arms = [ctx.txn.get(ArmState, ctx.tenant, arm_key(served.policy_version, name))
            for name in dict.fromkeys((served.arm, GLOBAL_ARM))]
    for item_id, reward in due:
        for arm in arms:
            _credit(arm, np.asarray(served.contexts[item_id]), reward, served.credited.get(item_id))
        served.credited[item_id] = reward
    for arm in arms:
        _save(ctx, arm)
    _save(ctx, served)


def _served(ctx: Ctx, env: Envelope) -> None:
    p = env.personalization_prediction
    served = ctx.txn.get(ServedState, ctx.tenant, env.event_id)
    served.user_id, served.policy_version, served.arm = p.user_id, p.policy_version, p.arm
    for item_id, reward in served.pending.pop(p.user_id, {}).items():
        served.rewards[item_id] = max(reward, served.rewards.get(item_id, 0.0))
    served.pending.clear()
    dim = int(p.context_dim)
    if dim:
        for j, item in enumerate(p.items):
            served.contexts[item.item_id] = list(p.contexts[j * dim:(j + 1) * dim])
    _save(ctx, served)
    _settle(ctx, served)


def check_feedback(env: Envelope) -> None:
    """A personalization feedback the bandit cannot use is poison (to the DLQ), not a silent zero."""
    if env.type != "suggestion_feedback" or env.suggestion_feedback.capability != CAPABILITY:
        return
    p = env.suggestion_feedback
    if not p.item_id:
        raise InvalidEvent("suggestion_feedback.item_id is empty")
    if p.action == e.FEEDBACK_ACTION_UNSPECIFIED or p.action not in e.FeedbackAction.values():
        raise InvalidEvent(f"suggestion_feedback.action {p.action} is not a known action")


def _feedback(ctx: Ctx, env: Envelope) -> None:
    p = env.suggestion_feedback
    if p.capability != CAPABILITY:
        return
    reward = 1.0 if p.action in REWARDING else 0.0
    person = ctx.txn.get(PersonState, ctx.tenant, p.user_id)
    person.feedback += 1
    person.clicks += int(reward > 0)
    _save(ctx, person)
    served = ctx.txn.get(ServedState, ctx.tenant, p.suggestion_id)
    if not served.user_id:  # the recommendation has not been applied yet: whose it is is not known
        mine = served.pending.setdefault(p.user_id, {})
        mine[p.item_id] = max(reward, mine.get(p.item_id, 0.0))
    elif p.user_id != served.user_id:
        return  # feedback on someone else's recommendation credits nothing
    else:
        served.rewards[p.item_id] = max(reward, served.rewards.get(p.item_id, 0.0))
    _save(ctx, served)
    _settle(ctx, served)


def _prefetch(env: Envelope) -> list[tuple[type[EntityState], str]]:
    t = env.tenant_id
    if env.type == "task_viewed":
        p = env.task_viewed
        return [(ItemState, state_key(ItemState.kind, t, p.task_id)),
                (PersonState, state_key(PersonState.kind, t, p.user_id))]
    if env.type == "suggestion_feedback":
        return [(ServedState, state_key(ServedState.kind, t, env.suggestion_feedback.suggestion_id))]
    if env.type == "personalization_prediction":
        return [(ServedState, state_key(ServedState.kind, t, env.event_id))]
    return []


PERSONALIZATION_REDUCERS = Reducers("personalization", {
    "user_joined": _joined,
    "project_created": lambda ctx, env: _members(ctx, env.project_created.project_id, env.project_created.member_ids),
    "project_updated": lambda ctx, env: _members(ctx, env.project_updated.project_id, env.project_updated.member_ids),
    "task_created": _task_created,
    "task_assigned": _assigned,
    "task_status_changed": _status,
    "task_completed": lambda ctx, env: _closed(ctx, env.task_completed.task_id, env.task_completed.project_id),
    "task_viewed": _viewed,
    "personalization_prediction": _served,
    "suggestion_feedback": _feedback,
}, _prefetch)
"""The personalization aggregates: applied by the service (live), its rebuild and the simulation."""
