"""gRPC adapter of the anomaly service: score a user now, list / acknowledge / resolve incidents.

Thin: requests become calls on the ensemble, the rules engine's incidents and the per-tenant rules store
(`rules_store`: GetRules / PutRules, versioned and audited); errors are domain errors (InvalidArgument,
NotFound, Unavailable, FailedPrecondition for a stale rules version) that the mesh interceptor maps to
status codes. Without a model
(no champion yet) ScoreEntity answers Unavailable. Incidents are those of the service's store (its consumer
raises them; `state.StoreIncidents`) or of an in-memory engine; a tenant only ever sees its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from sunday.ml.v1 import anomaly_pb2, anomaly_pb2_grpc
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.errors import InvalidArgument, NotFound, Unavailable
from mesh.serving import ServiceBinding, bind
from services.anomaly.ensemble import Scorer
from services.anomaly.pipeline import Dataset
from services.anomaly.rules import SEVERITY, Incident, RuleEngine
from services.anomaly.rules_store import RulesStore, TenantRules

SERVICE_NAME = "sunday.ml.v1.AnomalyService"
DEFAULT_PORT = 50054

Ctx = Any  # grpc.aio.ServicerContext[request, response]: unused by these handlers


def rules_message(r: TenantRules) -> anomaly_pb2.RulesResponse:
    return anomaly_pb2.RulesResponse(tenant_id=r.tenant_id, rules_yaml=r.yaml, version=r.version,
                                     updated_by=r.updated_by, updated_at_unix=r.updated_at_unix)


def incident_message(inc: Incident) -> anomaly_pb2.Incident:
    return anomaly_pb2.Incident(
        incident_id=inc.incident_id, tenant_id=inc.tenant_id, entity_id=inc.entity_id,
        severity=SEVERITY[inc.severity], status=inc.status, rules=sorted(inc.rules), alerts=inc.alerts,
        suppressed=inc.suppressed, opened_at_unix=int(inc.opened_at.timestamp()),
        last_alert_at_unix=int(inc.last_alert_at.timestamp()))


class Incidents(Protocol):
    """Where the servicer finds incidents: the service's store (`state.StoreIncidents`) or an engine."""

    def list(self, tenant_id: str) -> list[Incident]: ...

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> Incident | None: ...


class EngineIncidents:
    """The incidents of an in-memory `RuleEngine` (the offline detector, tests)."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine

    def list(self, tenant_id: str) -> list[Incident]:
        return [inc for inc in self.engine.state.incidents.values() if inc.tenant_id == tenant_id]

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> Incident | None:
        inc = self.engine.state.incidents.get(incident_id)
        if inc is None or inc.tenant_id != tenant_id:
            return None
        return self.engine.set_status(incident_id, "resolved" if status == "resolved" else "acknowledged")


class AnomalyServicer(anomaly_pb2_grpc.AnomalyServiceServicer):
    def __init__(self, model: Callable[[], Scorer | None], incidents: Incidents, rules: RulesStore) -> None:
        """``model``: the champion (None, or raising Unavailable, while there is none)."""
        self._model = model
        self._incidents = incidents
        self._rules = rules

    async def ScoreEntity(self, request: anomaly_pb2.ScoreEntityRequest,
                          context: Ctx) -> anomaly_pb2.ScoreEntityResponse:
        if not request.tenant_id or not request.user_id:
            raise InvalidArgument("tenant_id and user_id are required")
        events = [ev for ev in request.events if ev.tenant_id == request.tenant_id
                  and ev.WhichOneof("payload") == "user_activity" and ev.user_activity.user_id == request.user_id]
        if not events:
            raise InvalidArgument("events: no user_activity of this tenant and user")
        model = self._model()
        if model is None:
            raise Unavailable("no anomaly model has been promoted yet")
        ds = Dataset.from_events(sorted(events, key=lambda ev: (ev.occurred_at.seconds, ev.occurred_at.nanos)))
        z_if, z_ae = model.components(ds.tenants[-1:], ds.vectors[-1:], ds.seqs[-1:])
        w = model.weight_iforest
        margin = float(w * z_if[0] + (1 - w) * z_ae[0] - model.threshold)
        pred = e.AnomalyPrediction(user_id=request.user_id, score=margin,
                                   provenance=c.Provenance(model_name="anomaly", model_version=model.version))
        pred.components.add(feature="isolation_forest_z", contribution=float(z_if[0]))
        pred.components.add(feature="lstm_autoencoder_z", contribution=float(z_ae[0]))
        return anomaly_pb2.ScoreEntityResponse(prediction=pred)

    async def ListIncidents(self, request: anomaly_pb2.ListIncidentsRequest,
                            context: Ctx) -> anomaly_pb2.ListIncidentsResponse:
        if not request.tenant_id:
            raise InvalidArgument("tenant_id is required")
        found = [incident_message(inc) for inc in await asyncio.to_thread(self._incidents.list, request.tenant_id)
                 if request.include_resolved or inc.status != "resolved"]
        return anomaly_pb2.ListIncidentsResponse(incidents=sorted(found, key=lambda i: (i.opened_at_unix,
                                                                                         i.incident_id)))

    async def _change(self, request: anomaly_pb2.IncidentActionRequest, status: str) -> anomaly_pb2.IncidentResponse:
        if not request.tenant_id or not request.incident_id:
            raise InvalidArgument("tenant_id and incident_id are required")
        # another tenant's incident does not exist here
        inc = await asyncio.to_thread(self._incidents.set_status, request.tenant_id, request.incident_id, status)
        if inc is None:
            raise NotFound(f"incident {request.incident_id!r} not found")
        return anomaly_pb2.IncidentResponse(incident=incident_message(inc))

    async def Acknowledge(self, request: anomaly_pb2.IncidentActionRequest,
                          context: Ctx) -> anomaly_pb2.IncidentResponse:
        return await self._change(request, "acknowledged")

    async def Resolve(self, request: anomaly_pb2.IncidentActionRequest, context: Ctx) -> anomaly_pb2.IncidentResponse:
        return await self._change(request, "resolved")

    async def GetRules(self, request: anomaly_pb2.GetRulesRequest, context: Ctx) -> anomaly_pb2.RulesResponse:
        return rules_message(await asyncio.to_thread(self._rules.get, request.tenant_id))

    async def PutRules(self, request: anomaly_pb2.PutRulesRequest, context: Ctx) -> anomaly_pb2.RulesResponse:
        changed = await asyncio.to_thread(self._rules.put, request.tenant_id, request.rules_yaml,
                                          request.expected_version, request.actor)
        return rules_message(changed)


def binding(model: Callable[[], Scorer | None], incidents: Incidents | RuleEngine, rules: RulesStore) -> ServiceBinding:
    """The servicer's binding; a `RuleEngine` as `incidents` serves that engine's (in-memory) incidents."""
    source = EngineIncidents(incidents) if isinstance(incidents, RuleEngine) else incidents
    return bind(SERVICE_NAME, anomaly_pb2_grpc.add_AnomalyServiceServicer_to_server,
                AnomalyServicer(model, source, rules))
