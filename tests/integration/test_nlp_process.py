"""The real `python -m services.nlp` process on the local broker and Redis, with its embedder and a tiny
sentiment head registered as champions in a temporary MLflow: task events in -> a duplicates prediction
out; a comment -> its sentiment; Search and Embed answer over gRPC (through the typed client other
services use); SIGTERM ends it cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sunday.ml.v1 import events_pb2 as e
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, decode, new_envelope
from mesh.models import CHAMPION, ModelRegistry
from mesh.serving import channel
from services.nlp.__main__ import TOPICS
from services.nlp.client import NlpClient
from services.nlp.embedder import MODEL_NAME
from services.nlp.text import MODEL_NAME as SENTIMENT
from tests.services_harness import Registry, ServiceProcess, service_env
from tests.support import drain
from tests.unit.nlp.helpers import exported_embedder
from tests.unit.nlp.test_textwire import sentiment_model

pytestmark = pytest.mark.integration
A = "tenant-a"


def test_the_service_process_indexes_predicts_and_serves(settings: MeshSettings, tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    models = ModelRegistry(registry.settings())
    now = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    models.log_and_register(MODEL_NAME, exported_embedder(), {}, {"purpose": "tests"}, now, alias=CHAMPION)
    models.log_and_register(SENTIMENT, sentiment_model().current.model.path, {}, {"purpose": "tests"}, now,
                            alias=CHAMPION)
    topics = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, topics, [*TOPICS, "predictions.nlp", "dlq"])
    env = service_env(registry, settings.redis.url, settings.kafka.bootstrap_servers, settings.kafka.topic_prefix,
                      tmp_path / "offline", MESH_NLP__DATA_DIR=str(tmp_path / "nlp"))
    with ServiceProcess("nlp", env, tmp_path / "logs") as proc:
        proc.start()
        proc.wait_serving(180)
        publisher = KafkaPublisher(settings.kafka, topics)
        for task, title in (("t-1", "NameNode crashes on restart after the disk filled up"),
                            ("t-2", "Namenode crash at restart when the disk is full")):
            publisher.publish(new_envelope(A, e.TaskCreated(task_id=task, project_id="p-1", title=title,
                                                            description="edit log replay fails"), producer="t"))
        publisher.publish(new_envelope(A, e.TaskCommented(task_id="t-1", project_id="p-1", comment_id="c-1",
                                                          author_id="u", text="The build is broken again, terrible"),
                                       producer="t"))
        publisher.flush()
        out = [decode(m.value).nlp_prediction for m in drain(
            settings.kafka, topics.physical("predictions.nlp"), 10,
            enough=lambda ms: {decode(m.value).nlp_prediction.kind for m in ms} >= {"duplicates", "sentiment"})]
        kinds = {p.kind: p for p in out}
        dup = kinds["duplicates"]  # the two tasks sit on different partitions: whichever came second is flagged
        assert {dup.subject_id, *(d.item_id for d in dup.duplicates)} == {"t-1", "t-2"}
        assert kinds["sentiment"].subject_id == "c-1" and kinds["sentiment"].sentiment == "negative"
        publisher.close()

        async def ask() -> tuple[nlp_pb2.SearchResponse, int]:
            async with channel(f"127.0.0.1:{proc.port}") as ch:
                found = await nlp_pb2_grpc.NlpServiceStub(ch).Search(
                    nlp_pb2.SearchRequest(tenant_id=A, query="namenode disk full", k=5), timeout=30)
                vectors = await NlpClient(ch, deadline_s=30).embed(["one", "two", "three"])
                return found, int(vectors.shape[0])

        found, embedded = asyncio.run(ask())
        assert {h.item_id for h in found.hits} == {"t-1", "t-2"} and embedded == 3
        assert proc.terminate(30) == 0
