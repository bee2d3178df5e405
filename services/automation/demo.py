"""What the demo shows for automation: the suggestions that came out beside the simulator's planted
workflows — found, missed and wrong — and one of them approved through the gateway.

A suggestion is *correct* when its person, trigger type, trigger condition and steps (in order) are those
of a planted workflow of its tenant.

For ``scripts/demo.py``::

    from services.automation.demo import demo
    out = demo(sim, suggestion_events, gateway_url="http://127.0.0.1:8080", token=bearer, settings=settings)

``suggestion_events`` are the envelopes read from ``ml.suggestions`` (and/or ``ml.predictions.automation``).
``out`` has ``found`` / ``missed`` / ``wrong`` (rows: tenant, person, trigger, steps, workflow id,
suggestion id), ``recall``, ``precision``, ``planted``, ``suggested``, and ``approval``: the gateway's answer
to ``POST /v1/automation/suggestions/{id}/approve`` for one correct open suggestion of the token's tenant
and ``event_id`` of the approved automation's event on ``ml.suggestions`` (None when it did not come within
``timeout_s``), or ``{"skipped": why}`` without a gateway URL and token or an open suggestion.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from mesh.config import KafkaSettings, MeshSettings
from mesh.events import Envelope, TopicRegistry, decode
from simulator import Simulation, WorkflowTruth

Key = tuple[str, str, str, str, tuple[str, ...]]


def truth_key(w: WorkflowTruth) -> Key:
    return (w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition,
            tuple(f"{s.action}:{s.detail}" for s in w.steps))


def suggestion_key(env: Envelope) -> Key | None:
    """The key of a Suggestion (ml.suggestions) or AutomationPrediction envelope; None for other events."""
    if env.type == "suggestion":
        s, user, rule = env.suggestion, env.suggestion.user_id, env.suggestion.rule
        if s.capability != "automation":
            return None
    elif env.type == "automation_prediction":
        user, rule = env.automation_prediction.user_id, env.automation_prediction.rule
    else:
        return None
    trigger_type, _, condition = rule.trigger.partition(" ")
    return (env.tenant_id, user, trigger_type, condition.strip(), tuple(rule.actions))


CLOSED = ("expired", "rejected", "invalid")


def standing(suggestions: Sequence[Envelope]) -> list[Envelope]:
    """The suggestions that stand: per suggestion id its newest Suggestion event, unless that one closed it
    (expired, superseded, rejected); AutomationPrediction envelopes count only without Suggestion events."""
    events = [e for e in suggestions if e.type == "suggestion" and e.suggestion.capability == "automation"]
    if not events:
        return [e for e in suggestions if e.type == "automation_prediction"]
    newest: dict[str, Envelope] = {}
    order = {"": 0, "suggested": 1, "approved": 2, "rejected": 2, "expired": 2, "invalid": 2}
    for env in events:
        key = env.suggestion.suggestion_id or env.event_id
        rank = (env.occurred_at.ToNanoseconds(), order.get(env.suggestion.status, 1))
        if key not in newest or rank >= (newest[key].occurred_at.ToNanoseconds(),
                                         order.get(newest[key].suggestion.status, 1)):
            newest[key] = env
    return [e for e in newest.values() if e.suggestion.status not in CLOSED]


def score(truth: Sequence[WorkflowTruth], suggestions: Sequence[Envelope]) -> dict[str, Any]:
    """Found / missed / wrong of the standing suggestions (see :func:`standing`) against the planted truth."""
    planted = {truth_key(w): w for w in truth}
    ids: dict[Key, str] = {}
    for env in standing(suggestions):
        key = suggestion_key(env)
        if key is not None and env.type == "suggestion":
            ids.setdefault(key, env.suggestion.suggestion_id)
    keys = {k for k in (suggestion_key(e) for e in standing(suggestions)) if k is not None}
    found = sorted(k for k in keys if k in planted)
    wrong = sorted(k for k in keys if k not in planted)
    missed = sorted(k for k in planted if k not in keys)

    def row(k: Key) -> dict[str, Any]:
        out: dict[str, Any] = {"tenant_id": k[0], "user_id": k[1], "trigger": f"{k[2]} {k[3]}", "steps": list(k[4])}
        if k in planted:
            out["workflow_id"] = planted[k].workflow_id
        if k in ids:
            out["suggestion_id"] = ids[k]
        return out

    return {
        "found": [row(k) for k in found], "missed": [row(k) for k in missed], "wrong": [row(k) for k in wrong],
        "recall": len(found) / len(planted) if planted else 0.0,
        "precision": len(found) / len(keys) if keys else 0.0,
        "planted": len(planted), "suggested": len(keys),
    }


def results(sim: Simulation, suggestions: list[Envelope]) -> dict[str, Any]:
    """Found / missed / wrong suggestions against the simulation's planted workflows, with recall and
    precision (``scripts/demo.py`` prints this)."""
    return score(sim.truth.workflows, suggestions)


def item_key(tenant_id: str, item: dict[str, Any]) -> Key:
    """The key of a suggestion as the gateway answers it (``GET /v1/automation/suggestions`` items)."""
    trigger_type, _, condition = str(item["rule"]["trigger"]).partition(" ")
    return (tenant_id, str(item["user_id"]), trigger_type, condition.strip(), tuple(item["rule"]["actions"]))


async def approve_one(http: Any, token: str, tenant_id: str, prefer: Sequence[Key] = (), reason: str = "demo"
                      ) -> dict[str, Any]:
    """List the open suggestions of the token's tenant through the gateway and approve one (the first
    whose key is in ``prefer``, else the first listed): the gateway's JSON answer of the approve, or
    ``{"skipped": why}``. ``http`` is an ``httpx.AsyncClient`` with the gateway's base URL."""
    headers = {"Authorization": f"Bearer {token}"}
    listed = await http.get("/v1/automation/suggestions", params={"limit": 200}, headers=headers)
    if listed.status_code != 200:
        return {"skipped": f"listing suggestions answered {listed.status_code}: {listed.text[:300]}"}
    items: list[dict[str, Any]] = listed.json()["items"]
    if not items:
        return {"skipped": "no open suggestion in the tenant"}
    wanted = set(prefer)
    chosen = next((i for i in items if item_key(tenant_id, i) in wanted), items[0])
    answer = await http.post(f"/v1/automation/suggestions/{chosen['suggestion_id']}/approve",
                             json={"reason": reason}, headers=headers)
    if answer.status_code != 200:
        return {"skipped": f"approve answered {answer.status_code}: {answer.text[:300]}"}
    out: dict[str, Any] = answer.json()
    return out


def approved_event(kafka: KafkaSettings, suggestion_id: str, timeout_s: float = 60.0) -> Envelope | None:
    """The Suggestion event with status ``approved`` of that suggestion on ``ml.suggestions`` (read from the
    start of the topic), or None when it does not come within ``timeout_s``."""
    from mesh.bus import KafkaConsumerTransport

    consumer = KafkaConsumerTransport(kafka, f"automation-demo-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([TopicRegistry(kafka.topic_prefix).physical("suggestions")])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.poll(500, 0.5):
                if msg.value is None:
                    continue
                env = decode(msg.value)
                if (env.type == "suggestion" and env.suggestion.suggestion_id == suggestion_id
                        and env.suggestion.status == "approved"):
                    return env
    finally:
        consumer.close()
    return None


def demo(sim: Simulation, suggestions: Sequence[Envelope], *, gateway_url: str | None = None,
         token: str | None = None, tenant_id: str | None = None, settings: MeshSettings | None = None,
         timeout_s: float = 60.0) -> dict[str, Any]:
    """Found / missed / wrong (:func:`results`) and, with a gateway (``gateway_url`` + a bearer ``token`` of
    a client of ``tenant_id`` with the ``automation:read`` and ``automation:write`` scopes; default tenant:
    the first of the simulation's planted truth) and ``settings`` (Kafka of the run), one correct suggestion
    approved through ``POST /v1/automation/suggestions/{id}/approve`` with the id of the approved
    automation's event. Prints nothing; see the module docstring for the returned keys."""
    out = results(sim, list(suggestions))
    if not gateway_url or not token:
        out["approval"] = {"skipped": "no gateway URL and token given"}
        return out
    tenant = tenant_id or min((w.tenant_id for w in sim.truth.workflows), default="tenant-000")
    prefer = [item_key(r["tenant_id"], {"user_id": r["user_id"], "rule": {"trigger": r["trigger"],
                                                                         "actions": r["steps"]}})
              for r in out["found"]]

    async def run() -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
            return await approve_one(client, token, tenant, prefer)

    approval = asyncio.run(run())
    if "skipped" not in approval:
        kafka = (settings or MeshSettings()).kafka
        event = approved_event(kafka, str(approval["suggestion_id"]), timeout_s)
        approval["event_id"] = event.event_id if event is not None else None
    out["approval"] = approval
    return out
