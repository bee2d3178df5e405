"""End to end on the real broker and Redis with the real ``python -m services.automation`` process (its
next-action model registered as champion in a temporary MLflow; nlp deliberately unreachable):

a simulated week in (with two malformed events in the middle) -> the planted workflows suggested on
``ml.suggestions`` (found / missed / wrong against the simulator's truth, nothing wrong), the malformed
events in the DLQ with their reason while the service goes on, the WARNING that template matching is
structural only; then through the real gateway app in front of the process: the open suggestions listed,
one correct suggestion approved with :func:`services.automation.demo.approve_one` -> the approved
automation published on ``ml.suggestions`` (decided by the calling client; found by
:func:`services.automation.demo.approved_event`) and in the audit trail, a repeated approve answered
unchanged, a contradicting reject refused (409); an unsafe automation refused by Validate over gRPC;
SIGTERM ends the process cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from sunday.ml.v1 import automation_pb2 as api
from sunday.ml.v1 import automation_pb2_grpc as api_grpc
from sunday.ml.v1 import events_pb2 as pb

from gateway.devtools import harness
from mesh.bus import KafkaPublisher, Message, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from mesh.models import CHAMPION, ModelRegistry
from services.automation.__main__ import OUTPUTS, TOPICS
from services.automation.approval import ApprovalStore
from services.automation.demo import approve_one, approved_event, item_key, results
from services.automation.engine import MODEL_NAME
from services.automation.sequences import episodes_of
from simulator import SimConfig, Simulation
from tests.services_harness import Registry, ServiceProcess, free_port, service_env
from tests.support import drain
from tests.unit.automation._model import trigram_onnx

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # the process starts slowly on a loaded machine
TENANT = "tenant-000"
WAIT_S = 120.0


def _champion(tmp: Path, events: list[Envelope]) -> Registry:
    """The next-action model of the week's episodes (counted trigrams as ONNX: no torch, a second)."""
    path = trigram_onnx(episodes_of(events), tmp / "model" / "next.onnx").onnx.path
    registry = Registry(f"sqlite:///{tmp / 'mlflow.db'}", tmp / "artifacts")
    start = datetime(2026, 1, 5, tzinfo=UTC)
    ModelRegistry(registry.settings()).log_and_register(MODEL_NAME, path, {}, {"purpose": "tests"},
                                                        (start, start + timedelta(weeks=1)), alias=CHAMPION)
    return registry


async def test_the_service_process_suggests_the_planted_workflows_and_approval_through_the_gateway_publishes(
        settings: MeshSettings, tmp_path: Path) -> None:
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=50, weeks=1, seed=0))
    events = list(sim.events())
    topics = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, topics, [*TOPICS, *OUTPUTS])
    nlp_down = f"127.0.0.1:{free_port()}"
    env = service_env(_champion(tmp_path, events), settings.redis.url, settings.kafka.bootstrap_servers,
                      settings.kafka.topic_prefix, tmp_path / "offline", MESH_AUTOMATION__MINE_INTERVAL_S="0",
                      MESH_AUTOMATION__NLP_ADDRESS=nlp_down)
    client = redis.Redis.from_url(settings.redis.url)
    ns = f"{settings.namespace}:automation"
    with ServiceProcess("automation", env, tmp_path / "logs") as proc:
        publish_week(settings, topics, events)  # waiting on the topics when the process starts: large batches
        proc.start()
        proc.wait_serving(400)

        def all_found(msgs: list[Message]) -> bool:
            return bool(results(sim, [decode(m.value) for m in msgs])["recall"] == 1.0)

        out = [decode(m.value) for m in drain(settings.kafka, topics.physical("suggestions"), 10_000, all_found,
                                              timeout_s=WAIT_S)]
        got = results(sim, out)
        assert got["planted"] == 4 and got["recall"] == 1.0 and got["wrong"] == [], (got, proc.log_tail())
        dlq = drain(settings.kafka, topics.physical("dlq"), 2)
        assert len(dlq) == 2 and all(dict(m.headers).get("dlq.reason") for m in dlq)
        assert "structural only" in proc.log_text() and nlp_down in proc.log_text()

        approved = await approve_through_the_gateway(proc.port, got["found"])
        sid = approved["suggestion_id"]
        event = await asyncio.to_thread(approved_event, settings.kafka, sid, WAIT_S)
        assert event is not None and event.suggestion.decided_by == approved["decided_by"]
        assert list(event.suggestion.rule.actions) == approved["rule"]["actions"]
        trail = ApprovalStore(client, ns).audit(TENANT, sid)
        assert [(a.from_, a.to) for a in trail] == [("", "suggested"), ("suggested", "approved")]
        assert trail[-1].by == approved["decided_by"]
        await unsafe_automation_refused(proc.port, approved["user_id"])
        assert proc.terminate(30) == 0
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)
    client.close()


def publish_week(settings: MeshSettings, topics: TopicRegistry, events: list[Envelope]) -> None:
    consumed = {t for name in TOPICS for t in topics.spec(name).event_types}
    inputs = [ev for ev in events if ev.type in consumed]
    publisher = KafkaPublisher(settings.kafka, topics)
    half = len(inputs) // 2
    for ev in inputs[:half]:
        publisher.publish(ev)
    publisher.publish_raw("activity", b"\x08garbage", f"{TENANT}:x".encode(), [])
    no_task = new_envelope(TENANT, pb.TaskAssigned(project_id="p", assignee_id="u"), producer="test")
    publisher.publish_raw("tasks", no_task.SerializeToString(), f"{TENANT}:none".encode(), [])
    for ev in inputs[half:]:
        publisher.publish(ev)
    publisher.flush()
    publisher.close()


async def approve_through_the_gateway(port: int, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The real gateway app (in-process, real Redis) in front of the process: approve one found suggestion."""
    settings = harness.gateway_settings(backend=f"127.0.0.1:{port}")
    async with harness.lifespan_client(harness.build(settings)) as http:
        caller = await harness.create_client(http, TENANT)
        token = await harness.token(http, caller)
        headers = {"Authorization": f"Bearer {token}"}
        listed = (await http.get("/v1/automation/suggestions", headers=headers)).json()["items"]
        keys = [item_key(TENANT, {"user_id": r["user_id"], "rule": {"trigger": r["trigger"], "actions": r["steps"]}})
                for r in found]
        assert {item_key(TENANT, i) for i in listed} == set(keys)  # what stands is what is open
        approved = await approve_one(http, token, TENANT, keys)
        assert approved.get("status") == "approved" and approved["decided_by"] == caller.client_id, approved
        assert item_key(TENANT, approved) in set(keys)
        sid = approved["suggestion_id"]
        again = await http.post(f"/v1/automation/suggestions/{sid}/approve", headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "approved"
        refused = await http.post(f"/v1/automation/suggestions/{sid}/reject", headers=headers)
        assert refused.status_code == 409 and "is approved" in refused.text
        return approved


async def unsafe_automation_refused(port: int, user_id: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        unsafe = await api_grpc.AutomationServiceStub(channel).Validate(api.ValidateRequest(
            tenant_id=TENANT, actor_id=user_id, trigger_type="task_created", steps=["create_subtask:template=x"]),
            timeout=30)
    assert not unsafe.ok and {"cycle", "cross_project"} <= {r.rule for r in unsafe.reasons}
    assert unsafe.dry_run.firings > 0
