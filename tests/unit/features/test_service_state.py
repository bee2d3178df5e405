"""A service's own aggregates through the mesh stores, and derived output event ids."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest
from pydantic import Field
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, derived_event_id, new_envelope
from mesh.features import Ctx, EntityState, InMemoryAggregates, Reducers, StateMissing, TaskState
from tests.unit.features._stream import T0, env


class Counted(EntityState):
    """A toy per-task aggregate a service could declare next to itself."""

    kind: ClassVar[str] = "toy_counted"
    comments: int = 0
    authors: list[str] = Field(default_factory=list)


def _commented(ctx: Ctx, ev: Envelope) -> None:
    state = ctx.txn.get(Counted, ctx.tenant, ev.task_commented.task_id)
    state.comments += 1
    if ev.task_commented.author_id not in state.authors:
        state.authors = sorted({*state.authors, ev.task_commented.author_id})
    state.touch(ctx.at)
    ctx.txn.put(state)


TOY = Reducers("toy", {"task_commented": _commented})


def _comment(i: int) -> Envelope:
    return env("t", e.TaskCommented(task_id="k", project_id="p", comment_id=f"c{i}", author_id=f"u{i % 2}"),
               T0 + timedelta(minutes=i))


def test_a_service_table_applies_each_event_once_in_its_own_store() -> None:
    store = InMemoryAggregates(TOY)
    events = [_comment(i) for i in range(5)]
    store.apply(events[:3])
    again = store.apply(events)  # a redelivery overlapping what was applied
    state = store.load(Counted, "t", "k")
    assert state is not None and (state.comments, state.authors) == (5, ["u0", "u1"])
    assert (again.applied, again.duplicates) == (2, 3)
    assert store.load(TaskState, "t", "k") is None  # the entity reducers are not this store's table
    assert store.load_many(Counted, "t", ["k", "nope"])[1] is None


def test_require_built_refuses_until_marked() -> None:
    store = InMemoryAggregates(TOY)
    with pytest.raises(StateMissing):
        store.apply([_comment(0)], require_built=True)
    assert store.load(Counted, "t", "k") is None
    store.mark_built()
    store.apply([_comment(0)], require_built=True)
    assert store.built()
    store.clear()
    assert not store.built() and store.load(Counted, "t", "k") is None


def _prediction(version: str) -> e.AssignmentPrediction:
    return e.AssignmentPrediction(task_id="task-1", project_id="p",
                                  provenance=c.Provenance(model_name="m", model_version=version))


def test_output_ids_derive_from_input_type_version_and_subject() -> None:
    first = new_envelope("t", _prediction("3"), producer="x", caused_by="in-1")
    again = new_envelope("t", _prediction("3"), producer="x", caused_by="in-1")
    other_model = new_envelope("t", _prediction("4"), producer="x", caused_by="in-1")
    other_input = new_envelope("t", _prediction("3"), producer="x", caused_by="in-2")
    assert first.event_id == again.event_id == derived_event_id("in-1", "assignment_prediction", "m:3", "task-1")
    assert len({first.event_id, other_model.event_id, other_input.event_id}) == 3
    task = new_envelope("t", e.TimelinePrediction(entity_id="task-1"), producer="x", caused_by="in-1")
    project = new_envelope("t", e.TimelinePrediction(entity_id="p"), producer="x", caused_by="in-1")
    assert task.event_id != project.event_id  # two outputs of one type from one input
    assert new_envelope("t", _prediction("3"), producer="x").event_id != first.event_id  # not derived: random
