"""Every example of the topics the anomaly service consumes goes through its real batch handler on the bus
runner path (in-process broker): accepted, nothing dead-lettered; a malformed activity event is.

`contract_handler(tmp)` builds that handler (state in memory, the default rules, a stand-in champion): the
generic contract test (tests/contract/test_examples_contract.py) can list it under ``"anomaly"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.events import Envelope, TopicRegistry, new_envelope, occurred_at
from mesh.features import InMemoryAggregates
from services.anomaly.__main__ import TOPICS
from services.anomaly.detector import default_rules
from services.anomaly.ensemble import FloatArray, Scorer
from services.anomaly.handlers import AnomalyHandler
from services.anomaly.state import DetectorContext, UserState, anomaly_reducers

REGISTRY = TopicRegistry()


class FlatScorer:
    """A stand-in champion: every hour scores 0 (below the threshold)."""

    version = "contract"
    weight_iforest = 0.5
    threshold = 1.0

    def components(self, tenants: Sequence[str], vectors: FloatArray,
                   seqs: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.zeros(len(tenants)), np.zeros(len(tenants))


def _scorer() -> Scorer:
    return FlatScorer()


@contextmanager
def contract_handler(tmp: Path, publisher: Publisher | None = None) -> Iterator[AnomalyHandler]:
    dctx = DetectorContext(_scorer, lambda tenant: default_rules())
    store = InMemoryAggregates(anomaly_reducers(dctx))
    out = publisher or Publisher(InMemoryBroker().producer(), REGISTRY)
    yield AnomalyHandler(store, dctx, out, default_rules=default_rules())


def _shifted(env: Envelope, hours: int) -> Envelope:
    """The example an hour later (a new id): the user's first hour closes and is scored."""
    field = env.WhichOneof("payload")
    assert field is not None
    return new_envelope(env.tenant_id, getattr(env, field), producer="contract",
                        occurred_at=occurred_at(env) + timedelta(hours=hours))


def test_anomaly_declares_exactly_its_topics() -> None:
    assert sorted(TOPICS) == sorted(spec.logical for spec in REGISTRY.consumed_by("anomaly"))


def test_every_example_goes_through_the_real_handler(tmp_path: Path) -> None:
    examples = [env for spec in REGISTRY.consumed_by("anomaly") for env in REGISTRY.examples(spec.logical)]
    sent = [*examples, *(_shifted(env, 1) for env in examples)]
    bad = new_envelope("tenant-1", e.UserActivity(user_id="user-2", action="login"), producer="contract")
    bad.user_activity.action = ""  # malformed on the wire (the publisher would refuse it)
    broker = InMemoryBroker()
    publisher = Publisher(broker.producer(), REGISTRY)
    for env in sent:
        publisher.publish(env)
    publisher.publish_raw("activity", bad.SerializeToString(), b"tenant-1:user-2", [])
    seen: list[str] = []
    with contract_handler(tmp_path, publisher) as handler:
        def handle_batch(envs: Sequence[Envelope]) -> None:
            handler(envs)
            seen.extend(env.event_id for env in envs)

        stats = ConsumerRunner(consumer=broker.consumer("anomaly"), publisher=publisher, topics=list(TOPICS),
                               group_id="anomaly", batch_handler=handle_batch,
                               options=RunnerOptions(max_messages=len(sent) + 1, poll_timeout_s=0.1,
                                                     idle_timeout_s=5)).run()
        store = handler._store
    assert stats.dead_lettered == 1 and "action" in " ".join(str(r) for r in stats.dlq_reasons)
    assert stats.handled == len(sent)
    assert sorted(seen) == sorted(env.event_id for env in sent)
    users = {(env.tenant_id, env.user_activity.user_id) for env in examples
             if env.WhichOneof("payload") == "user_activity"}
    states = [store.load(UserState, tenant, user) for tenant, user in users]
    assert users and all(s is not None and s.hours_scored == 1 for s in states)  # the first hours were scored
