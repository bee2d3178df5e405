"""One pass of the suggestion pipeline for a tenant: episodes from the facts -> mined patterns -> the
next-action model's support -> closest template -> safety validation -> records for the approval store,
and the events that announce them (deterministic ids).

A pattern the model does not support is no suggestion at all; one that fails validation is kept as
``invalid`` with its reasons (never shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as pb

from mesh.events import Envelope, new_envelope
from services.automation.approval import SuggestionRecord
from services.automation.miner import MinedPattern, MinerConfig, mine
from services.automation.sequences import episodes
from services.automation.state import FactStore
from services.automation.suggest import Candidate, NextActionScorer, candidates
from services.automation.templates import Embedder, TemplateMatch, describe, match
from services.automation.validate import AutomationSpec, Validator, ValidatorConfig, Verdict

PRODUCER = "automation"
MODEL_NAME = "automation-next-action"


@dataclass(frozen=True)
class EngineConfig:
    miner: MinerConfig = field(default_factory=MinerConfig)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    top_k: int = 3
    """A follow-up step must be among the model's top-k next actions."""


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    template: TemplateMatch
    verdict: Verdict

    @property
    def shown(self) -> bool:
        return self.candidate.model.supported and self.verdict.ok


def spec_of(p: MinedPattern, automation_id: str = "candidate") -> AutomationSpec:
    return AutomationSpec(p.tenant_id, p.user_id, p.trigger_type, p.condition, p.steps, p.projects, automation_id)


def propose(facts: FactStore, tenant_id: str, scorer: NextActionScorer | None, embedder: Embedder | None = None,
            config: EngineConfig = EngineConfig()) -> list[Proposal]:
    """Every model-supported pattern of the tenant with its template and validation verdict."""
    patterns = mine(episodes(facts, tenant_id), config.miner)
    validator = Validator(facts, config.validator)
    out = []
    for cand in candidates(scorer, patterns, config.top_k):
        if not cand.model.supported:
            continue
        p = cand.pattern
        verdict = validator.validate(spec_of(p, cand.suggestion_id))
        out.append(Proposal(cand, match(p.trigger_type, p.condition, p.steps, embedder), verdict))
    return out


def record_of(proposal: Proposal) -> SuggestionRecord:
    p, run = proposal.candidate.pattern, proposal.verdict.dry_run
    weeks = max((run.until - run.since).total_seconds() / (7 * 86400.0), 1e-9)
    text = describe(p.trigger_type, p.condition, p.steps)
    template = proposal.template.template
    return SuggestionRecord(
        tenant_id=p.tenant_id, suggestion_id=proposal.candidate.suggestion_id, user_id=p.user_id,
        trigger_type=p.trigger_type, condition=p.condition, steps=p.steps, projects=p.projects,
        support=p.support, confidence=round(p.confidence, 4),
        title=template.description if template else text, body=(
            f"{text} You did this by hand after {p.support} of {p.episodes} such events; over the last "
            f"{run.firings} it would have fired, it saves {len(p.steps)} manual actions each."),
        template_id=template.template_id if template else "",
        actions_per_week=round(run.firings / weeks * len(p.steps), 2),
        reasons=tuple(f"{r.rule}: {r.message}" for r in proposal.verdict.reasons))


def suggestion_envelope(record: SuggestionRecord, model_version: str = "") -> Envelope:
    """The Suggestion event of the record's current status (id derived from the suggestion id, the status
    and when it was offered: a replay re-publishes the same id, a later round after a cool-down a new one)."""
    at = record.decided_at or record.created_at
    payload = pb.Suggestion(
        suggestion_id=record.suggestion_id, capability="automation", kind="automation_rule",
        user_id=record.user_id, title=record.title, body=record.body,
        rule=pb.AutomationRule(trigger=f"{record.trigger_type} {record.condition}".strip(),
                               actions=list(record.steps)),
        provenance=c.Provenance(model_name=MODEL_NAME, model_version=model_version),
        status=record.status, decided_by=record.decided_by, reason=record.reason, support=record.support,
        confidence=record.confidence, template_id=record.template_id)
    return new_envelope(record.tenant_id, payload, producer=PRODUCER,
                        occurred_at=datetime.fromtimestamp(at, UTC) if at else None,
                        caused_by=f"{record.suggestion_id}@{record.created_at:.3f}", subject=record.status)


def prediction_envelope(record: SuggestionRecord, model_version: str = "") -> Envelope:
    """The AutomationPrediction (ml.predictions.automation) of a shown suggestion."""
    payload = pb.AutomationPrediction(
        user_id=record.user_id, rule=pb.AutomationRule(trigger=f"{record.trigger_type} {record.condition}".strip(),
                                                       actions=list(record.steps)),
        support=float(record.support), confidence=record.confidence,
        provenance=c.Provenance(model_name=MODEL_NAME, model_version=model_version))
    return new_envelope(record.tenant_id, payload, producer=PRODUCER,
                        occurred_at=datetime.fromtimestamp(record.created_at, UTC) if record.created_at else None,
                        caused_by=f"{record.suggestion_id}@{record.created_at:.3f}", subject=record.suggestion_id)


def shown(proposals: Sequence[Proposal]) -> list[Proposal]:
    return [p for p in proposals if p.shown]
