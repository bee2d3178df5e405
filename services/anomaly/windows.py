"""Windowed activity counts per user, project and tenant: the pure part of the faust stream step.

An event adds `Contribution`s (entity, signal, weight) to every window that contains its event time:
one tumbling window (`step == size`) or `size / step` hopping ones. A window's state maps each signal to
`{event_id: weight}`, so its count is the number of distinct events and its sum their items. Keeping the
ids makes the update idempotent: an event redelivered after a crash (at-least-once) lands on the same id
and changes nothing, which is why a restarted worker neither loses (changelog) nor double-counts (ids).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.events import Envelope, occurred_at

ACTIVITY_ACTIONS = ("login", "edit", "export", "bulk_delete", "permission_change", "api_call")
"""UserActivity actions counted by name; anything else counts as `other`."""


@dataclass(frozen=True)
class WindowSpec:
    """A window length and the step between window starts (equal: tumbling)."""

    name: str
    size_s: int
    step_s: int

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.step_s <= 0 or self.size_s % self.step_s:
            raise ValueError(f"window {self.name}: size {self.size_s}s must be a positive multiple of step "
                             f"{self.step_s}s")

    def starts(self, ts: int) -> list[int]:
        """Start (epoch seconds) of every window of this spec that contains `ts`, oldest first."""
        last = ts - ts % self.step_s
        return [last - k * self.step_s for k in range(self.size_s // self.step_s - 1, -1, -1)]


DEFAULT_WINDOWS = (
    WindowSpec("tumbling_1h", 3600, 3600),
    WindowSpec("hopping_1h_15m", 3600, 900),
    WindowSpec("tumbling_1d", 86400, 86400),
)


@dataclass(frozen=True)
class Contribution:
    entity_kind: str  # user, project, tenant
    entity_id: str
    signal: str  # e.g. "export" (events) with weight = items affected
    weight: float


def contributions(env: Envelope) -> list[Contribution]:
    """What one event adds to the windows of its user / project / tenant (empty: not windowed)."""
    kind = env.WhichOneof("payload")
    tenant = env.tenant_id
    if kind == "user_activity":
        act = env.user_activity
        action = act.action if act.action in ACTIVITY_ACTIONS else "other"
        weight = float(max(act.count, 1))
        return [Contribution("user", act.user_id, action, weight), Contribution("tenant", tenant, action, weight)]
    if kind in ("task_created", "task_completed"):
        project = env.task_created.project_id if kind == "task_created" else env.task_completed.project_id
        out = [Contribution("tenant", tenant, kind, 1.0)]
        if project:
            out.append(Contribution("project", project, kind, 1.0))
        if kind == "task_completed" and env.task_completed.assignee_id:
            out.append(Contribution("user", env.task_completed.assignee_id, kind, 1.0))
        return out
    return []


def window_key(tenant: str, c: Contribution, spec: WindowSpec, start: int) -> str:
    return f"{tenant}|{c.entity_kind}|{c.entity_id}|{spec.name}|{start}"


WindowState = dict[str, dict[str, float]]
"""signal -> {event_id: weight}."""


def updates(env: Envelope, specs: tuple[WindowSpec, ...] = DEFAULT_WINDOWS) -> dict[str, list[tuple[str, float]]]:
    """Window key -> [(signal, weight)] this event adds (several signals of one key are merged by `apply`)."""
    ts = int(occurred_at(env).timestamp())
    out: dict[str, list[tuple[str, float]]] = {}
    for c in contributions(env):
        for spec in specs:
            for start in spec.starts(ts):
                out.setdefault(window_key(env.tenant_id, c, spec, start), []).append((c.signal, c.weight))
    return out


def apply(state: WindowState | None, event_id: str, adds: list[tuple[str, float]]) -> tuple[WindowState, bool]:
    """The window's new state and whether it changed (False: this event was already counted)."""
    new: WindowState = {k: dict(v) for k, v in (state or {}).items()}
    changed = False
    for signal, weight in adds:
        ids = new.setdefault(signal, {})
        if event_id not in ids:
            ids[event_id] = weight
            changed = True
    return new, changed


def summary(state: WindowState) -> dict[str, tuple[int, float]]:
    """signal -> (distinct events, summed weight)."""
    return {signal: (len(ids), float(sum(ids.values()))) for signal, ids in state.items()}
