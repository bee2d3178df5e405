"""The service's core on in-memory Kafka and a real Milvus Lite collection: task events become searchable
vectors, a near-duplicate task gets a duplicates prediction (same id when redelivered), text updates
re-embed, tenant erasure deletes, and the gRPC servicer answers with domain errors for bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.message import Message
from sunday.ml.v1 import events_pb2 as e
from sunday.ml.v1 import nlp_pb2

from mesh.bus import InMemoryBroker, Publisher
from mesh.errors import InvalidArgument, NotFound
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from services.nlp.server import NlpServicer
from tests.unit.nlp.helpers import Service, embedder, service

REGISTRY = TopicRegistry()
A, B = "tenant-a", "tenant-b"


def created(tenant: str, task: str, title: str, description: str = "", project: str = "proj-1") -> Envelope:
    return new_envelope(tenant, e.TaskCreated(task_id=task, project_id=project, title=title,
                                              description=description), producer="test")


def event(tenant: str, payload: Message) -> Envelope:
    return new_envelope(tenant, payload, producer="test")


@pytest.fixture
def svc() -> Iterator[Service]:
    s = service()
    yield s
    s.index.drop()


def predictions(broker: InMemoryBroker) -> list[Envelope]:
    return [decode(m.value) for m in broker.messages(REGISTRY.physical("predictions.nlp"))]


WORLD = [
    created(A, "t-1", "NameNode crashes on restart after the disk filled up",
            "The namenode cannot replay its edit log when the disk is full."),
    created(A, "t-2", "Add dark mode to the settings page", "Users want a dark theme."),
    created(A, "t-3", "Quarterly budget review with finance"),
    created(B, "t-9", "NameNode crashes on restart after the disk filled up", "Same words, other tenant."),
]


def test_task_events_become_searchable_per_tenant_and_duplicates_are_published(svc: Service) -> None:
    broker = InMemoryBroker()
    handler = svc.handler(Publisher(broker.producer(), REGISTRY))
    handler(WORLD)
    assert predictions(broker) == []  # no two tasks of one tenant are alike yet
    hits, _ = svc.searcher.search(A, "namenode restart crash", 3)
    assert hits[0].item.item_id == "t-1" and {h.item.tenant_id for h in hits} == {A}

    dup = created(A, "t-4", "Namenode crash at restart when the disk is full",
                  "After a full disk the NameNode does not come back up: edit log replay fails.")
    handler([dup])
    (pred,) = predictions(broker)
    assert pred.type == "nlp_prediction" and pred.tenant_id == A
    assert pred.nlp_prediction.kind == "duplicates" and pred.nlp_prediction.subject_id == "t-4"
    assert [d.item_id for d in pred.nlp_prediction.duplicates] == ["t-1"]  # never B's identical t-9
    assert pred.nlp_prediction.provenance.model_name == "nlp-embedder"

    handler([dup])  # redelivered: same vectors, the same prediction id (subscribers dedupe)
    again = predictions(broker)[-1]
    assert again.event_id == pred.event_id and svc.index.count(A) == 4


def test_text_updates_re_embed_and_other_updates_keep_the_text(svc: Service) -> None:
    handler = svc.handler(Publisher(InMemoryBroker().producer(), REGISTRY))
    handler(WORLD)
    handler([event(A, e.TaskUpdated(task_id="t-2", title="Migrate the billing database to Postgres")),
             event(A, e.TaskUpdated(task_id="t-2", priority=e.PRIORITY_HIGH))])
    hits, _ = svc.searcher.search(A, "postgres billing migration", 1)
    item = hits[0].item
    assert item.item_id == "t-2" and item.title.startswith("Migrate") and item.text == "Users want a dark theme."
    similar, _ = svc.searcher.similar(A, "t-1", 5)
    assert "t-1" not in {h.item.item_id for h in similar} and len(similar) == 2


def test_a_deleted_task_is_no_longer_searched_nor_proposed_as_a_duplicate(svc: Service) -> None:
    broker = InMemoryBroker()
    handler = svc.handler(Publisher(broker.producer(), REGISTRY))
    handler(WORLD)
    deleted = event(A, e.TaskDeleted(task_id="t-1", project_id="proj-1"))
    handler([deleted])
    handler([deleted])  # redelivered: deleting again is a no-op
    assert svc.index.count(A) == 2 and svc.index.count(B) == 1  # B's task with the same text stays
    assert "t-1" not in {h.item.item_id for h in svc.searcher.search(A, "namenode restart crash", 5)[0]}
    with pytest.raises(NotFound):
        svc.searcher.similar(A, "t-1", 5)
    handler([created(A, "t-4", "Namenode crash at restart when the disk is full",
                     "After a full disk the NameNode does not come back up: edit log replay fails.")])
    assert predictions(broker) == []  # its duplicate was deleted: nothing to propose
    # created and deleted in one batch: the order of the batch holds
    handler([created(A, "t-5", "Rotate the TLS certificates"), event(A, e.TaskDeleted(task_id="t-5"))])
    assert svc.index.get(A, "task", ["t-5"]) == {}


def test_the_time_prior_ranks_the_task_created_closer_in_time_first(svc: Service) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp

    from services.nlp.fusion import TimePrior
    from services.nlp.search import Calibration

    def at(env: Envelope, day: int) -> Envelope:
        stamp = Timestamp()
        stamp.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day))
        env.occurred_at.CopyFrom(stamp)
        return env

    handler = svc.handler(Publisher(InMemoryBroker().producer(), REGISTRY))
    text = "Balancer hangs when a datanode is decommissioned"
    handler([at(created(A, "old", text), 0), at(created(A, "new", text), 200), at(created(A, "q", text), 201)])
    item = svc.index.get(A, "task", ["q"], with_vectors=True)["q"]
    expected = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=201)).timestamp() / 86400
    assert item[0].created_days == pytest.approx(expected)
    vector, days = item[1], item[0].created_days
    assert vector is not None
    base = Calibration(0.6, 0.9, True)
    plain = svc.searcher.rank(A, text, vector, 2, None, base, exclude="q", created_days=days)
    assert plain[0].score == pytest.approx(plain[1].score, abs=1e-5)  # the same text: no preference
    timed = svc.searcher.rank(A, text, vector, 2, None, replace(base, time=TimePrior(0.3, 30.0)), exclude="q",
                              created_days=days)
    assert [h.item.item_id for h in timed] == ["new", "old"] and timed[0].score > timed[1].score + 0.2
    assert timed[0].text == pytest.approx(plain[0].score, abs=1e-5)  # the threshold reads the text alone
    free_text = svc.searcher.rank(A, text, vector, 2, None, replace(base, time=TimePrior(0.3, 30.0)), exclude="q")
    assert free_text[0].score == pytest.approx(plain[0].score, abs=1e-5)  # no query time: no prior


def test_tenant_erasure_deletes_every_vector_of_the_tenant_only(svc: Service) -> None:
    handler = svc.handler(Publisher(InMemoryBroker().producer(), REGISTRY))
    comment = event(A, e.TaskCommented(task_id="t-1", project_id="proj-1", comment_id="c-1", author_id="u-1",
                                       text="Still failing after the patch"))
    handler([*WORLD, comment])
    assert svc.index.count(A) == 4
    handler([event(A, e.TenantErased(reason="offboarding")), created(B, "t-10", "Another task of B")])
    assert svc.index.count(A) == 0 and svc.index.count(B) == 2
    assert svc.searcher.search(A, "namenode", 5)[0] == []


def _call(coro: Any) -> Any:
    return asyncio.run(coro)


def test_grpc_servicer_search_similar_embed_and_refusals(svc: Service) -> None:
    svc.handler(Publisher(InMemoryBroker().producer(), REGISTRY))(WORLD)
    servicer = NlpServicer(svc.searcher, embedder())
    found = _call(servicer.Search(nlp_pb2.SearchRequest(tenant_id=A, query="dark theme", k=2,
                                                        filters={"project_id": "proj-1"}), None))
    assert found.hits[0].item_id == "t-2" and found.provenance.model_name == "nlp-embedder"
    none = _call(servicer.Search(nlp_pb2.SearchRequest(tenant_id=A, query="dark theme",
                                                       filters={"project_id": "proj-2"}), None))
    assert list(none.hits) == []
    embedded = _call(servicer.Embed(nlp_pb2.EmbedRequest(texts=["a", "b"]), None))
    assert embedded.dim == 384 and len(embedded.embeddings) == 2
    with pytest.raises(InvalidArgument):
        _call(servicer.Search(nlp_pb2.SearchRequest(tenant_id='a" or tenant_id != "', query="x"), None))
    with pytest.raises(InvalidArgument):
        _call(servicer.Search(nlp_pb2.SearchRequest(tenant_id=A, query="x", k=1000), None))
    with pytest.raises(NotFound):
        _call(servicer.SimilarTasks(nlp_pb2.SimilarTasksRequest(tenant_id=A, task_id="t-9"), None))  # B's task
