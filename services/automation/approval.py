"""The approval workflow of suggestions, in Redis: suggested -> approved / rejected / expired.

Every transition is one Lua script (atomic): it checks the current status, writes the new one, updates the
tenant's index of open suggestions and its weekly analytics, and on a rejection starts the cool-down of
that pattern for that person. So a concurrent approve and reject resolve once: the first wins, the other
gets :class:`IllegalTransition` naming the status it found. Repeating the transition a suggestion already
made (a retried approve) is not an error: it returns the record unchanged with ``changed=False``, and the
caller re-publishes the same event (its id is derived from the suggestion id and the status). Every
status change (offered as suggested or invalid, approved, rejected, expired) is also appended, in the same
script, to the suggestion's audit trail (:meth:`ApprovalStore.audit`: from, to, by whom, why, when).

A candidate that failed validation is kept as ``invalid`` with its reasons and never listed. Analytics per
tenant and ISO week: shown (offered), approved, rejected, expired, and the manual actions an approved
automation is estimated to save per week (its dry-run firings per week times its steps).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

Status = Literal["suggested", "approved", "rejected", "expired", "invalid"]
DECISIONS: dict[str, tuple[str, ...]] = {
    "approved": ("suggested",),
    "rejected": ("suggested",),
    "expired": ("suggested",),
}
"""target status -> the statuses it may come from."""


class IllegalTransition(ValueError):
    """The suggestion is not in a status the transition may start from."""


class UnknownSuggestion(KeyError):
    """No suggestion with that id in that tenant."""


@dataclass(frozen=True)
class SuggestionRecord:
    tenant_id: str
    suggestion_id: str
    user_id: str
    trigger_type: str
    condition: str
    steps: tuple[str, ...]
    projects: tuple[str, ...]
    support: int
    confidence: float
    title: str = ""
    body: str = ""
    template_id: str = ""
    actions_per_week: float = 0.0
    """Estimated manual actions it saves per week (dry-run firings per week x steps)."""
    status: str = "suggested"
    decided_by: str = ""
    reason: str = ""
    reasons: tuple[str, ...] = ()
    """Validation failures ("rule: message") of an invalid candidate."""
    created_at: float = 0.0
    decided_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> SuggestionRecord:
        data: dict[str, Any] = json.loads(raw)
        for name in ("steps", "projects", "reasons"):
            data[name] = tuple(data.get(name, ()))
        return cls(**data)


@dataclass(frozen=True)
class Transition:
    record: SuggestionRecord
    previous: str
    changed: bool


@dataclass(frozen=True)
class AuditEntry:
    """One status change of a suggestion: ``from`` ("" when first offered) -> ``to``, by whom, why, when."""

    from_: str
    to: str
    by: str
    reason: str
    at: float


def week_of(at: float) -> str:
    year, week, _ = datetime.fromtimestamp(at, UTC).isocalendar()
    return f"{year}-W{week:02d}"


def weeks_ending(at: float, n: int) -> list[tuple[str, date]]:
    """The ``n`` ISO weeks (UTC) ending with the one of ``at``, oldest first: (``week_of`` key, its Monday)."""
    day = datetime.fromtimestamp(at, UTC).date()
    monday = day - timedelta(days=day.weekday())
    out = []
    for back in range(n - 1, -1, -1):
        start = monday - timedelta(weeks=back)
        year, week, _ = start.isocalendar()
        out.append((f"{year}-W{week:02d}", start))
    return out


# KEYS: record, index, analytics, cooldown, audit. ARGV: to, allowed(csv), by, reason, now, cooldown_s, saved
_TRANSITION = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {'missing', ''} end
local rec = cjson.decode(raw)
if rec.status == ARGV[1] then return {'same', raw} end
local ok = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == rec.status then ok = true end end
if not ok then return {'illegal', rec.status} end
local previous = rec.status
rec.status = ARGV[1]
rec.decided_by = ARGV[3]
rec.reason = ARGV[4]
rec.decided_at = tonumber(ARGV[5])
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out)
redis.call('ZREM', KEYS[2], rec.suggestion_id)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if ARGV[1] == 'approved' then redis.call('HINCRBYFLOAT', KEYS[3], 'actions_saved_per_week', ARGV[7]) end
if ARGV[1] == 'rejected' then redis.call('SET', KEYS[4], 1, 'EX', ARGV[6]) end
redis.call('RPUSH', KEYS[5], cjson.encode({from=previous, to=ARGV[1], by=ARGV[3], reason=ARGV[4],
                                           at=tonumber(ARGV[5])}))
return {previous, out}
"""

# KEYS: record, index, analytics, cooldown, audit. ARGV: record json, status, expires_at, now
_OFFER = """
local raw = redis.call('GET', KEYS[1])
local previous = ''
if raw then
  local cur = cjson.decode(raw).status
  previous = cur
  if cur == 'approved' or cur == 'suggested' then return {'kept', raw} end
  if cur == 'rejected' and redis.call('EXISTS', KEYS[4]) == 1 then return {'cooling', raw} end
  if cur == ARGV[2] then return {'kept', raw} end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] == 'suggested' then
  redis.call('ZADD', KEYS[2], ARGV[3], cjson.decode(ARGV[1]).suggestion_id)
  redis.call('HINCRBY', KEYS[3], 'shown', 1)
else
  redis.call('HINCRBY', KEYS[3], 'invalid', 1)
end
local reasons = cjson.decode(ARGV[1]).reasons
redis.call('RPUSH', KEYS[5], cjson.encode({from=previous, to=ARGV[2], by='automation',
                                           reason=table.concat(reasons, '; '), at=tonumber(ARGV[4])}))
return {'offered', ARGV[1]}
"""


@dataclass
class ApprovalStore:
    """Suggestions of every tenant under ``namespace`` in Redis (a ``redis.Redis`` client)."""

    client: Any
    namespace: str
    cooldown_s: int = 14 * 86400
    """A rejected pattern is not suggested again to that person for this long."""
    expire_after_s: float = 14 * 86400
    """A suggestion nobody decided on expires after this long."""
    _scripts: dict[str, Any] = field(default_factory=dict)

    def _script(self, name: str, body: str) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(body)
        return self._scripts[name]

    def _keys(self, tenant_id: str, suggestion_id: str, user_id: str, at: float) -> list[str]:
        ns = self.namespace
        return [f"{ns}:sug:{tenant_id}:{suggestion_id}", f"{ns}:open:{tenant_id}",
                f"{ns}:analytics:{tenant_id}:{week_of(at)}", f"{ns}:cooldown:{tenant_id}:{user_id}:{suggestion_id}",
                f"{ns}:audit:{tenant_id}:{suggestion_id}"]

    def offer(self, record: SuggestionRecord, now: float) -> tuple[str, SuggestionRecord]:
        """Register a candidate: ``suggested`` (shown) when valid, ``invalid`` (kept with its reasons, never
        shown) otherwise. Returns ("offered" | "kept" | "cooling", the stored record): an open or approved
        suggestion is kept as it is, and a rejected one stays rejected during its cool-down."""
        status = "invalid" if record.reasons else "suggested"
        fresh = replace(record, status=status, created_at=now, decided_by="", reason="", decided_at=0.0)
        outcome, raw = self._script("offer", _OFFER)(
            keys=self._keys(record.tenant_id, record.suggestion_id, record.user_id, now),
            args=[fresh.to_json(), status, now + self.expire_after_s, now])
        return _text(outcome), SuggestionRecord.from_json(raw)

    def transition(self, tenant_id: str, suggestion_id: str, to: str, now: float, by: str = "", reason: str = ""
                   ) -> Transition:
        """suggested -> approved | rejected | expired, atomically; see the module docstring."""
        if to not in DECISIONS:
            raise IllegalTransition(f"unknown target status {to!r}; one of {sorted(DECISIONS)}")
        current = self.get(tenant_id, suggestion_id)
        outcome, raw = self._script("transition", _TRANSITION)(
            keys=self._keys(tenant_id, suggestion_id, current.user_id, now),
            args=[to, ",".join(DECISIONS[to]), by, reason, now, self.cooldown_s, current.actions_per_week])
        outcome = _text(outcome)
        if outcome == "missing":
            raise UnknownSuggestion(f"no suggestion {suggestion_id!r} in tenant {tenant_id!r}")
        if outcome == "illegal":
            raise IllegalTransition(f"suggestion {suggestion_id} is {_text(raw)}: only a suggested one can become "
                                    f"{to}")
        if outcome == "same":
            record = SuggestionRecord.from_json(raw)
            return Transition(record, record.status, False)
        return Transition(SuggestionRecord.from_json(raw), outcome, True)

    def get(self, tenant_id: str, suggestion_id: str) -> SuggestionRecord:
        raw = self.client.get(f"{self.namespace}:sug:{tenant_id}:{suggestion_id}")
        if raw is None:
            raise UnknownSuggestion(f"no suggestion {suggestion_id!r} in tenant {tenant_id!r}")
        return SuggestionRecord.from_json(raw)

    def audit(self, tenant_id: str, suggestion_id: str) -> list[AuditEntry]:
        """Every status change of the suggestion, oldest first (written atomically with the change)."""
        raws = self.client.lrange(f"{self.namespace}:audit:{tenant_id}:{suggestion_id}", 0, -1)
        out = []
        for raw in raws:
            d: dict[str, Any] = json.loads(raw)
            out.append(AuditEntry(str(d.get("from", "")), str(d["to"]), str(d.get("by", "")),
                                  str(d.get("reason", "")), float(d["at"])))
        return out

    def open(self, tenant_id: str, user_id: str = "", limit: int = 50) -> list[SuggestionRecord]:
        """The suggestions awaiting a decision (validated ones only), oldest first."""
        ids = [_text(i) for i in self.client.zrange(f"{self.namespace}:open:{tenant_id}", 0, -1)]
        raws = self.client.mget([f"{self.namespace}:sug:{tenant_id}:{i}" for i in ids]) if ids else []
        out = [SuggestionRecord.from_json(r) for r in raws if r is not None]
        return [r for r in out if r.status == "suggested" and (not user_id or r.user_id == user_id)][:limit]

    def expire_due(self, tenant_id: str, now: float) -> list[Transition]:
        """Expire the open suggestions whose time is up."""
        due = self.client.zrangebyscore(f"{self.namespace}:open:{tenant_id}", "-inf", now)
        out = []
        for sid in due:
            try:
                out.append(self.transition(tenant_id, _text(sid), "expired", now, reason="no decision in time"))
            except IllegalTransition:
                continue  # decided meanwhile: the decision stands
        return out

    def analytics(self, tenant_id: str, weeks: Sequence[str]) -> dict[str, dict[str, float]]:
        """Per ISO week: shown, approved, rejected, expired, invalid, actions_saved_per_week."""
        out = {}
        for week in weeks:
            raw = self.client.hgetall(f"{self.namespace}:analytics:{tenant_id}:{week}")
            out[week] = {_text(k): float(v) for k, v in raw.items()}
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _published_key(namespace: str, record: SuggestionRecord) -> str:
    return f"{namespace}:published:{record.tenant_id}:{record.suggestion_id}:{record.status}:{record.created_at:.3f}"


def published(store: ApprovalStore, record: SuggestionRecord) -> bool:
    """Whether the event of the record's current status was published (then marked)."""
    return bool(store.client.exists(_published_key(store.namespace, record)))


def mark_published(store: ApprovalStore, record: SuggestionRecord) -> None:
    """Mark after publishing: a crash in between re-publishes the SAME event id (subscribers dedupe)."""
    store.client.set(_published_key(store.namespace, record), 1, ex=int(store.expire_after_s + store.cooldown_s))
