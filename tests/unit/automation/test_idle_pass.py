"""The tail of a burst is mined: a tenant whose newest facts came within ``mine_interval_s`` of its last
pass is passed when the interval has gone by, at the runner's idle tick (``on_idle``), without waiting for
another event; a tenant with nothing new is not passed again."""

from __future__ import annotations

from sunday.ml.v1 import events_pb2 as e

from mesh.bus import InMemoryBroker, Publisher
from mesh.events import Envelope, TopicRegistry, new_envelope
from services.automation.approval import ApprovalStore
from services.automation.handlers import AutomationHandler
from services.automation.model import VersionedScorer
from services.automation.state import FactStore
from tests.unit.automation._model import NoModel


def _task(i: int) -> Envelope:
    return new_envelope("acme", e.TaskCreated(task_id=f"t-{i}", project_id="p-1", title="Fix login"),
                        producer="test")


def test_the_tail_of_a_burst_is_passed_when_idle(store: ApprovalStore) -> None:
    now = [1_000.0]
    facts = FactStore()
    facts.store.mark_built()
    handler = AutomationHandler(facts, store, Publisher(InMemoryBroker().producer(), TopicRegistry()),
                                VersionedScorer(NoModel()), mine_interval_s=60.0, clock=lambda: now[0])
    handler([_task(1)])
    assert handler.last_pass("acme") == 1_000.0
    now[0] = 1_010.0
    handler([_task(2)])  # within the interval: left for later
    assert handler.last_pass("acme") == 1_000.0
    now[0] = 1_030.0
    handler.on_idle()
    assert handler.last_pass("acme") == 1_000.0  # still within the interval
    now[0] = 1_061.0
    handler.on_idle()  # no new event came: the idle tick mines the tail
    assert handler.last_pass("acme") == 1_061.0
    now[0] = 1_200.0
    handler.on_idle()  # nothing new since: no pass
    assert handler.last_pass("acme") == 1_061.0
