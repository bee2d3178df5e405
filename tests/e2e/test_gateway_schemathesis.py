"""Schemathesis against a live gateway (uvicorn, its own process) in front of the REAL assignment and
timeline servicers (trained ranker, timeline predictor on a simulated week) and the REAL nlp,
personalization, automation and anomaly servicers (seeded as in test_gateway_new_services) with a credential holding
every scope, write routes included: no 5xx, and every response conforms to the served OpenAPI (status code
documented, content type, headers, body schema), valid input is accepted and invalid input rejected.
A stateful run follows the links schemathesis infers (create a webhook -> read/patch/delete it, create an
API key -> revoke it) with the same checks."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gateway.auth.principal import ALL_SCOPES
from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings, ModelSettings
from mesh.events import TopicRegistry
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import MeshServer, build_server
from services.assignment.server import binding as assignment_binding
from services.timeline.export import export_untrained
from services.timeline.handlers import in_memory_handler
from services.timeline.predictor import MODEL_NAME
from services.timeline.server import binding as timeline_binding
from simulator import SimConfig, Simulation
from tests.e2e.test_gateway_new_services import SEEDED, new_services
from tests.support import wait_until
from tests.unit.assignment.helpers import build_service, static_model, tiny_model

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVED = ("ASSIGNMENT", "TIMELINE", "NLP", "PERSONALIZATION", "AUTOMATION", "ANOMALY")  # all on RealServices' server
TIMELINE_EVENTS = {"user_joined", "project_created", "milestone_created", "task_created", "task_assigned",
                   "task_status_changed", "task_completed"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealServices:
    """The real assignment and timeline servicers on one gRPC server, on a loop of their own (a thread), so
    the synchronous schemathesis calls in the test never block them."""

    def __init__(self, tmp: Path) -> None:
        events = list(Simulation(SimConfig(tenants=1, users_per_tenant=10, weeks=1, seed=11)).events())
        self.tenant = events[0].tenant_id
        self.task_id = next(e.task_created.task_id for e in events if e.type == "task_created")
        model = StaticModel(VersionedModel(MODEL_NAME, "1", OnnxModel.load(export_untrained(tmp / "t"),
                                                                            ModelSettings())))
        timeline = in_memory_handler(model, Publisher(InMemoryBroker().producer(), TopicRegistry()), simulations=100)
        timeline([env for env in events if env.type in TIMELINE_EVENTS])
        assignment = build_service(static_model(tiny_model(tmp / "a")))
        assignment.apply(events)
        self.new = new_services(tmp / "new", self.tenant)
        self._bindings = [timeline_binding(timeline.predictor), assignment_binding(assignment.ranker),
                          *self.new.bindings]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: MeshServer | None = None
        self._thread = threading.Thread(target=self._run, name="real-services", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = build_server(self._bindings, MeshSettings(), 0, host="127.0.0.1")
            await self._server.start()
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(60), "the gRPC server did not start"
        assert self._server is not None
        return f"127.0.0.1:{self._server.port}"

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)

        async def cancel_the_rest() -> None:  # e.g. the ranker's request coalescer
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self._loop).result(30)
        asyncio.run_coroutine_threadsafe(self.new.llm_redis.aclose(), self._loop).result(30)  # type: ignore[attr-defined]
        self.new.cleanup()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, RealServices]]:
    services = RealServices(tmp_path_factory.mktemp("services"))
    with services as backend:
        port, admin = _free_port(), secrets.token_hex(16)
        plans = {"free": {"rate_per_s": 1000, "burst": 10000, "client_rate_per_s": 1000, "client_burst": 10000,
                          "daily_quota": 10**7, "monthly_quota": 10**8}}
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env={
            **env, "MESH_ENVIRONMENT": "test", "MESH_PORT": str(port), "MESH_REDIS_PREFIX": f"st-{admin[:8]}:",
            "MESH_AUTH__ADMIN_TOKEN": admin, **{f"MESH_BACKENDS__{name}": backend for name in SERVED},
            "MESH_WEBHOOKS__WORKER_ENABLED": "false", "MESH_PLANS": json.dumps(plans),
            "MESH_ACCESS_LIMITS": json.dumps({name: {"rate_per_s": 1000, "burst": 100_000} for name in (
                "token_per_client", "token_per_source", "manage_per_client", "manage_per_source")})})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, "gateway", timeout_s=120,
                       ignore=(OSError, httpx.HTTPError))  # a loaded 2-core machine: the start is slow
            created = httpx.post(f"{url}/v1/admin/clients", headers={"Authorization": f"Bearer {admin}"}, json={
                "tenant_id": services.tenant, "scopes": list(ALL_SCOPES)}).json()  # write routes included
            token = httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials",
                                                           "client_id": created["client_id"],
                                                           "client_secret": created["client_secret"]}).json()
            yield url, token["access_token"], services
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# Webhook targets are checked against DNS when the subscription is written (SSRF guard): a schema-valid
# https URL whose host does not resolve, or resolves to a private address, is refused with 422, which no
# schema can express. Likewise an alert rules file: any string fits the schema, the anomaly service parses
# it as YAML rules (400 naming the field) against a version (409). Every other check still runs on these
# operations, and on the others all checks do.
SEMANTIC_422 = {("POST", "/v1/webhooks"), ("PATCH", "/v1/webhooks/{subscription_id}"), ("PUT", "/v1/anomaly/rules")}


def _excluded(case: schemathesis.Case) -> list[object]:
    return [positive_data_acceptance] if (case.method.upper(), case.path) in SEMANTIC_422 else []


def _schema(url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def test_every_operation_conforms_to_the_openapi(live: tuple[str, str, RealServices]) -> None:
    url, token, _ = live
    operations = [result.ok() for result in _schema(url).get_all_operations()]
    assert len(operations) >= 21
    failures: list[str] = []
    server_errors: list[str] = []
    cases = 0

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
            try:  # every default check, the response schema included
                case.validate_response(response, excluded_checks=_excluded(case))  # type: ignore[arg-type]
            except BaseExceptionGroup as exc:  # schemathesis' FailureGroup: collect them all
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{str(exc).strip().splitlines()[0][:300]}")

        check()
    print(f"schemathesis: {cases} cases over {len(operations)} operations")
    assert not server_errors, "\n".join(server_errors[:10])
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(sorted(set(failures))[:15])


def test_real_ids_answer_with_conforming_bodies(live: tuple[str, str, RealServices]) -> None:
    """Generated ids are nearly always unknown (404); these calls use ids the real services know, so the 200
    bodies are checked against the schema too."""
    url, token, services = live
    schema = _schema(url)
    rank = schema["/v1/assignment/rank"]["POST"]
    case = rank.Case(body={"task_id": services.task_id, "k": 3})
    response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    case.validate_response(response)
    task = schema["/v1/timeline/tasks/{task_id}"]["GET"].Case(path_parameters={"task_id": services.task_id})
    response = task.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    task.validate_response(response)
    known_task, person, suggestion = SEEDED["tasks"][0], SEEDED["people"][0], SEEDED["suggestions"][0]
    cases = [
        schema["/v1/nlp/search"]["POST"].Case(body={"query": "SSO login"}),
        schema["/v1/nlp/tasks/{task_id}/similar"]["GET"].Case(path_parameters={"task_id": known_task}),
        schema["/v1/nlp/sentiment"]["POST"].Case(body={"texts": ["great work", "broken again"]}),
        schema["/v1/nlp/summaries"]["POST"].Case(body={"project_id": "proj-a", "utterances": [
            {"speaker": "Ada", "text": "I will fix the SSO login by Friday."}]}),
        schema["/v1/nlp/drafts"]["POST"].Case(body={"title": "SSO login broken"}),
        schema["/v1/personalization/recommendations"]["GET"].Case(query={"user_id": person}),
        schema["/v1/automation/suggestions"]["GET"].Case(),
        schema["/v1/automation/suggestions/{suggestion_id}/approve"]["POST"].Case(
            path_parameters={"suggestion_id": suggestion}, body={"reason": "saves time"}),
        schema["/v1/anomaly/scores"]["POST"].Case(body={"user_id": person, "events": [
            {"occurred_at": "2026-01-05T10:00:00Z", "action": "login"},
            {"occurred_at": "2026-01-05T11:20:00Z", "action": "bulk_delete", "count": 300}]}),
        schema["/v1/anomaly/incidents"]["GET"].Case(query={"include_resolved": "true"}),
        schema["/v1/anomaly/incidents/{incident_id}/acknowledge"]["POST"].Case(
            path_parameters={"incident_id": services.new.incident_ids[0]}),
        schema["/v1/anomaly/incidents/{incident_id}/resolve"]["POST"].Case(
            path_parameters={"incident_id": services.new.incident_ids[1]}),
        schema["/v1/anomaly/rules"]["GET"].Case(),
    ]
    for case in cases:
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200, (case.path, response.text)
        case.validate_response(response)


def test_stateful_links(live: tuple[str, str, RealServices]) -> None:
    url, token, _ = live
    schema = _schema(url)
    machine = schema.as_state_machine()
    assert machine.bundles, "schemathesis inferred no links between operations"
    calls: list[str] = []

    class Stateful(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": {"Authorization": f"Bearer {token}"}, "timeout": 10}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            super().after_call(response, case)  # the recorder the stateful checks read
            calls.append(f"{case.method} {case.path}")

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: list[Any] | None = None, **kwargs: Any) -> None:
            case.validate_response(response, additional_checks=additional_checks, excluded_checks=_excluded(case),  # type: ignore[arg-type]
                                   transport_kwargs=kwargs or None, recorder=getattr(self, "recorder", None))

    Stateful.run(settings=settings(max_examples=25, stateful_step_count=6, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck)))
    linked = {c for c in calls if "{" in c}
    print(f"stateful: {len(calls)} calls, {len(linked)} distinct operations on linked ids")
    assert linked, "no call used an id produced by an earlier call"
