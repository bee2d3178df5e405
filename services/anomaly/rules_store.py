"""Per-tenant alert rules in Redis, versioned, every change audited.

A tenant without rules of its own gets the built-in defaults (`detector.DEFAULT_RULES`, version 0). A
change (`put`) is validated first (a bad file raises :class:`~mesh.errors.InvalidArgument` naming the field,
e.g. ``rules_yaml: invalid rules: rules.1.min_events: ...``), then applied with optimistic concurrency: it
names the version it was made against, and a stale one raises :class:`~mesh.errors.FailedPrecondition`
(gRPC FAILED_PRECONDITION, the gateway's 409) with nothing changed. The new rules and the audit record
(who, when, tenant, old and new version, digests of the old and new YAML) are written in ONE Redis
transaction to the rules hash and the audit stream ``{namespace}:anomaly:rules:audit``: there is no
change without its audit entry.

Layout (under the service's namespace):
- ``{ns}:anomaly:rules:{tenant}`` hash: ``yaml``, ``version``, ``updated_by``, ``updated_at`` (unix s);
- ``{ns}:anomaly:rules:audit`` stream: one entry per change (``XRANGE`` it to read the trail).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from mesh.errors import FailedPrecondition, InvalidArgument, translate_infra_errors
from services.anomaly.detector import DEFAULT_RULES
from services.anomaly.rules import RuleError, RuleSet, load_rules

MAX_RULES_BYTES = 64 * 1024
"""A rules file larger than this is refused (it is a handful of rules, not a data set)."""


@dataclass(frozen=True)
class TenantRules:
    tenant_id: str
    yaml: str
    version: int
    """0: the built-in defaults (the tenant never set its own)."""
    updated_by: str
    updated_at_unix: int
    rules: RuleSet


@dataclass(frozen=True)
class AuditEntry:
    entry_id: str
    tenant_id: str
    actor: str
    at_unix: int
    old_version: int
    new_version: int
    old_sha256: str
    new_sha256: str


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def validate_rules(rules_yaml: str) -> RuleSet:
    """The RuleSet of `rules_yaml`, or InvalidArgument naming the field (``rules_yaml: ...``)."""
    if not rules_yaml.strip():
        raise InvalidArgument("rules_yaml is required")
    if len(rules_yaml.encode()) > MAX_RULES_BYTES:
        raise InvalidArgument(f"rules_yaml is larger than {MAX_RULES_BYTES} bytes")
    try:
        return load_rules(rules_yaml)
    except RuleError as exc:
        raise InvalidArgument(f"rules_yaml: {exc}") from None


class RulesStore:
    """Rules of each tenant in Redis (`client`: a redis.Redis), under the service's `namespace`."""

    def __init__(self, client: Any, namespace: str, default_yaml: str = DEFAULT_RULES) -> None:
        self._r = client
        self._ns = namespace
        self._default_yaml = default_yaml.strip() + "\n"
        self._default = load_rules(self._default_yaml)
        self._parsed: dict[str, tuple[int, RuleSet]] = {}

    @property
    def audit_stream(self) -> str:
        return f"{self._ns}:anomaly:rules:audit"

    def _key(self, tenant_id: str) -> str:
        return f"{self._ns}:anomaly:rules:{tenant_id}"

    def _from_hash(self, tenant_id: str, raw: dict[Any, Any]) -> TenantRules:
        if not raw:
            return TenantRules(tenant_id, self._default_yaml, 0, "", 0, self._default)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        version = int(fields["version"])
        cached = self._parsed.get(tenant_id)
        rules = cached[1] if cached is not None and cached[0] == version else load_rules(fields["yaml"])
        self._parsed[tenant_id] = (version, rules)
        return TenantRules(tenant_id, fields["yaml"], version, fields.get("updated_by", ""),
                           int(fields.get("updated_at", "0")), rules)

    def get(self, tenant_id: str) -> TenantRules:
        """The tenant's rules (the defaults, version 0, until it sets its own)."""
        if not tenant_id:
            raise InvalidArgument("tenant_id is required")
        with translate_infra_errors(f"reading the anomaly rules of {tenant_id}"):
            raw = self._r.hgetall(self._key(tenant_id))
        return self._from_hash(tenant_id, raw)

    def rules_for(self, tenant_ids: list[str]) -> dict[str, TenantRules]:
        """:meth:`get` of several tenants in one round trip (the consumer, once per batch)."""
        with translate_infra_errors("reading anomaly rules"):
            pipe = self._r.pipeline(transaction=False)
            for tenant_id in tenant_ids:
                pipe.hgetall(self._key(tenant_id))
            raws = pipe.execute()
        return {t: self._from_hash(t, raw) for t, raw in zip(tenant_ids, raws, strict=True)}

    def put(self, tenant_id: str, rules_yaml: str, expected_version: int, actor: str,
            now_unix: int | None = None) -> TenantRules:
        """Replace the tenant's rules if they are still at `expected_version`; audited atomically."""
        if not tenant_id:
            raise InvalidArgument("tenant_id is required")
        if not actor.strip():
            raise InvalidArgument("actor is required (who makes the change goes into the audit trail)")
        rules = validate_rules(rules_yaml)
        at = int(time.time()) if now_unix is None else now_unix
        key = self._key(tenant_id)

        def body(pipe: Any) -> TenantRules:
            current = self._from_hash(tenant_id, pipe.hgetall(key))
            if current.version != expected_version:
                raise FailedPrecondition(
                    f"expected_version {expected_version} is stale: the rules of {tenant_id} are at version "
                    f"{current.version} (read them again, then change them)")
            new_version = current.version + 1
            pipe.multi()
            pipe.hset(key, mapping={"yaml": rules_yaml, "version": new_version, "updated_by": actor,
                                    "updated_at": at})
            pipe.xadd(self.audit_stream, {"tenant_id": tenant_id, "actor": actor, "at": at,
                                          "old_version": current.version, "new_version": new_version,
                                          "old_sha256": _sha(current.yaml), "new_sha256": _sha(rules_yaml)})
            return TenantRules(tenant_id, rules_yaml, new_version, actor, at, rules)

        with translate_infra_errors(f"changing the anomaly rules of {tenant_id}"):
            out: TenantRules = self._r.transaction(body, key, value_from_callable=True)
        self._parsed[tenant_id] = (out.version, rules)
        return out

    def audit(self, tenant_id: str | None = None, count: int = 1000) -> list[AuditEntry]:
        """The audit trail, oldest first (of one tenant when `tenant_id` is given)."""
        with translate_infra_errors("reading the anomaly rules audit"):
            entries = self._r.xrange(self.audit_stream, count=count)
        out = []
        for entry_id, raw in entries:
            f = {_text(k): _text(v) for k, v in raw.items()}
            if tenant_id is None or f["tenant_id"] == tenant_id:
                out.append(AuditEntry(_text(entry_id), f["tenant_id"], f["actor"], int(f["at"]),
                                      int(f["old_version"]), int(f["new_version"]), f["old_sha256"],
                                      f["new_sha256"]))
        return out
