"""The gateway's timeline routes against the REAL TimelineService (not the stub backend): the REST shape
the SDK is generated from is what the service really answers, tenants stay apart, unknown ids are 404."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.devtools import harness
from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings, ModelSettings
from mesh.events import TopicRegistry
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import build_server
from services.timeline.export import export_untrained
from services.timeline.handlers import in_memory_handler
from services.timeline.predictor import MODEL_NAME
from services.timeline.server import binding
from simulator import SimConfig, Simulation

pytestmark = pytest.mark.integration


async def test_timeline_routes_answer_from_the_real_service(tmp_path: Path,
                                                            span_exporter: InMemorySpanExporter) -> None:
    model = StaticModel(VersionedModel(MODEL_NAME, "1", OnnxModel.load(export_untrained(tmp_path), ModelSettings())))
    handler = in_memory_handler(model, Publisher(InMemoryBroker().producer(), TopicRegistry()), simulations=200)
    predictor = handler.predictor
    events = list(Simulation(SimConfig(tenants=1, users_per_tenant=10, weeks=1, seed=11)).events())
    for env in events:
        if env.type in {"user_joined", "project_created", "milestone_created", "task_created", "task_assigned",
                        "task_status_changed", "task_completed"}:
            handler(env)
    tenant = events[0].tenant_id
    task = next(e.task_created for e in events if e.type == "task_created")
    project = next(e.project_created for e in events if e.type == "project_created"
                   and e.project_created.project_id == task.project_id)
    server = build_server([binding(predictor)], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    try:
        gw = harness.gateway_settings(backend=f"127.0.0.1:{server.port}")
        async with harness.lifespan_client(harness.build(gw)) as http:
            auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, tenant))}"}
            other = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'x'))}"}

            got = await http.get(f"/v1/timeline/tasks/{task.task_id}", headers=auth)
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["entity_kind"] == "task" and body["entity_id"] == task.task_id
            assert 0 <= body["remaining_hours_p10"] <= body["remaining_hours_p50"] <= body["remaining_hours_p90"]
            assert body["provenance"]["model_name"] == MODEL_NAME

            proj = await http.get(f"/v1/timeline/projects/{project.project_id}", headers=auth)
            assert proj.status_code == 200, proj.text
            assert proj.json()["project"]["entity_id"] == project.project_id
            assert 0 <= proj.json()["project"]["deadline_miss_probability"] <= 1

            for path in (f"/v1/timeline/tasks/{task.task_id}", "/v1/timeline/tasks/no-such-task"):
                missing = await http.get(path, headers=other if "no-such" not in path else auth)
                assert missing.status_code == 404, missing.text
                assert missing.headers["content-type"].startswith("application/problem+json")
    finally:
        await server.stop()
