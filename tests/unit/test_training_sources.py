"""`--source eventlog`: the train commands read the feature ingestor's offline event log (deduped, in time
order) and the timeline derives its labels from the events themselves, so a deployment trains without the
simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mesh.config import MeshSettings
from mesh.events import Envelope, occurred_at
from mesh.features import EventLog, LoggedEvent
from simulator import SimConfig, Simulation

WORLD = SimConfig(tenants=1, users_per_tenant=8, weeks=10, seed=9)
"""Long enough for a project to finish inside the stream."""


@pytest.fixture(scope="module")
def world() -> tuple[list[Envelope], Any]:
    """A simulated history and its ground truth."""
    sim = Simulation(WORLD)
    events = list(sim.events())
    return events, sim.truth


def test_assignment_trains_from_the_event_log(world: tuple[list[Envelope], Any], tmp_path: Path) -> None:
    from services.assignment.state import EVENT_TYPES
    from services.assignment.train import _parser, training_events

    events = world[0]
    log = EventLog(tmp_path / "events")
    log.append([LoggedEvent(e) for e in events])
    log.append([LoggedEvent(e) for e in events[:50]])  # at-least-once: a redelivered batch is logged again

    args = _parser().parse_args(["--source", "eventlog", "--event-log", str(tmp_path / "events")])
    got = training_events(args, MeshSettings())

    want = [e for e in events if e.type in EVENT_TYPES]
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in want)
    assert [occurred_at(e) for e in got] == sorted(occurred_at(e) for e in want)
    with pytest.raises(SystemExit, match="no training events"):
        training_events(_parser().parse_args(["--source", "eventlog", "--event-log", str(tmp_path / "empty")]),
                        MeshSettings())


def test_timeline_labels_from_the_events_agree_with_the_simulator(world: tuple[list[Envelope], Any]) -> None:
    from services.timeline.dataset import project_completions
    from services.timeline.train import logged_history

    events, truth = world
    logged = logged_history(events)

    horizon = max(occurred_at(e) for e in events)
    done_in_log = {(t.tenant_id, t.task_id): t.done_at for t in truth.tasks if t.done_at and t.done_at <= horizon}
    assert logged.task_done == done_in_log
    completed = {(p.tenant_id, m.milestone_id): (p.project_id, m.completed_at) for p in truth.projects
                 for m in p.milestones if m.completed_at is not None and m.completed_at <= horizon}
    assert logged.milestones == completed
    # a project counts as finished only when the events show it (every task done, then quiet): never early
    finished = {k: v for k, v in project_completions(truth).items() if v[1] <= horizon}
    assert logged.projects and all(finished.get(k) == v for k, v in logged.projects.items())
