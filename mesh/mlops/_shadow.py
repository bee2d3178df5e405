"""Shadow evidence: champion and challenger scored side by side on the same outcomes, and promotion gated on it.

The outcome joiner keeps, per join key, the score of every model version that predicted it
(``JoinState.counted``): a challenger served in shadow on the same events is scored on exactly the
champion's outcomes. :func:`paired_scores` collects the keys both versions were scored on;
:func:`shadow_evidence` compares them: the mean paired improvement of the challenger (oriented so that
positive is better) with a bootstrap confidence interval. It passes when there are at least ``min_outcomes``
pairs and the interval's lower bound is above ``margin``; :func:`promote_on_evidence` then moves
``champion`` (recorded as a ``promote`` with the evidence as its reason, so ``rollback`` can undo it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from mesh.bus import Publisher
from mesh.events import CONTENT_TYPE, Envelope, TopicRegistry, TopicSpec, encode, partition_key
from mesh.features import AggregateStore
from mesh.mlops._outcomes import JoinState, OutcomeSpec
from mesh.telemetry._names import HEADER_CONTENT_TYPE, HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_TENANT
from mesh.telemetry._tracing import inject_headers

Floats = npt.NDArray[np.float64]
_CHUNK = 256


@dataclass(frozen=True)
class ShadowEvidence:
    """The challenger against the champion on the outcomes both were scored on."""

    metric: str
    champion: str
    challenger: str
    outcomes: int
    champion_mean: float
    challenger_mean: float
    improvement: float
    """mean paired improvement of the challenger (positive: better, whichever way the metric points)"""
    ci_low: float
    ci_high: float
    confidence: float
    margin: float
    min_outcomes: int

    @property
    def passed(self) -> bool:
        return self.outcomes >= self.min_outcomes and self.ci_low > self.margin

    def summary(self) -> str:
        verdict = "passes" if self.passed else "does not pass"
        why = (f"only {self.outcomes} paired outcomes (< {self.min_outcomes})" if self.outcomes < self.min_outcomes
               else f"{self.confidence:.0%} CI of the improvement [{self.ci_low:.4g}, {self.ci_high:.4g}] "
                    f"{'>' if self.ci_low > self.margin else 'not >'} margin {self.margin:g}")
        return (f"shadow {self.challenger} vs champion {self.champion} on {self.outcomes} outcomes: {self.metric} "
                f"{self.challenger_mean:.4g} vs {self.champion_mean:.4g}; {verdict}: {why}")


def paired_scores(store: AggregateStore, spec: OutcomeSpec, champion: str, challenger: str,
                  tenants: Sequence[str] | None = None) -> tuple[Floats, Floats]:
    """``spec.metric`` of the two versions (``model:version``) on every join key both were scored on (in
    ``tenants``, default all)."""
    by_tenant: dict[str, list[str]] = {}
    for key in store.keys(JoinState.kind):
        _, tenant, entity = key.split(":", 2)
        if tenants is None or tenant in tenants:
            by_tenant.setdefault(tenant, []).append(entity)
    a: list[float] = []
    b: list[float] = []
    for tenant, entities in sorted(by_tenant.items()):
        for join in store.load_many(JoinState, tenant, sorted(entities)):
            if join is None:
                continue
            x, y = join.counted.get(champion), join.counted.get(challenger)
            if x is not None and y is not None and spec.metric in x and spec.metric in y:
                a.append(x[spec.metric])
                b.append(y[spec.metric])
    return np.asarray(a, np.float64), np.asarray(b, np.float64)


def shadow_evidence(spec: OutcomeSpec, champion: str, challenger: str, champion_scores: Floats,
                    challenger_scores: Floats, *, min_outcomes: int = 100, margin: float = 0.0,
                    confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> ShadowEvidence:
    """Mean paired improvement of the challenger with a percentile bootstrap interval (``resamples`` draws
    of the pairs with replacement)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, b = np.asarray(champion_scores, np.float64), np.asarray(challenger_scores, np.float64)
    if a.shape != b.shape:
        raise ValueError("paired scores must have the same length")
    n = len(a)
    if n == 0:
        return ShadowEvidence(spec.metric, champion, challenger, 0, float("nan"), float("nan"), float("nan"),
                              float("nan"), float("nan"), confidence, margin, min_outcomes)
    d = (b - a) if spec.higher_is_better else (a - b)
    rng = np.random.default_rng(seed)
    means = np.concatenate([d[rng.integers(0, n, (min(_CHUNK, resamples - i), n))].mean(axis=1)
                            for i in range(0, resamples, _CHUNK)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return ShadowEvidence(spec.metric, champion, challenger, n, float(a.mean()), float(b.mean()), float(d.mean()),
                          float(low), float(high), confidence, margin, min_outcomes)


class _AliasSetter(Protocol):
    def set_alias(self, name: str, alias: str, version: str, *, action: str = "set", actor: str | None = None,
                  reason: str = "") -> None: ...


def promote_on_evidence(registry: _AliasSetter, evidence: ShadowEvidence, actor: str | None = None) -> bool:
    """Move ``champion`` to the challenger when the evidence passes (recorded with the evidence as reason)."""
    if not evidence.passed:
        return False
    model, _, version = evidence.challenger.rpartition(":")
    registry.set_alias(model, "champion", version, action="promote", actor=actor, reason=evidence.summary())
    return True


# ------------------------------------------------------------------------------------------ serving in shadow
SHADOW_RETENTION_MS = 14 * 24 * 3600 * 1000


def shadow_topic(capability: str) -> TopicSpec:
    """``ml.shadow.<capability>``: the challenger's predictions, read only by the outcome joiner (the gateway's
    webhooks never subscribe to it). Declared with no event types so that the prediction type's own topic
    stays ``ml.predictions.<capability>``; :func:`publish_shadow` names the topic explicitly."""
    return TopicSpec(f"shadow.{capability}", f"ml.shadow.{capability}", (), (capability,), ("mlops",),
                     retention_ms=SHADOW_RETENTION_MS,
                     description=f"shadow predictions of the {capability} service's challenger")


def with_shadow_topics(prefix: str, capabilities: Sequence[str]) -> TopicRegistry:
    """The mesh's topic registry plus the shadow topics of ``capabilities``."""
    return TopicRegistry(prefix, (*TopicRegistry(prefix), *(shadow_topic(c) for c in capabilities)))


def publish_shadow(publisher: Publisher, env: Envelope, capability: str) -> None:
    """Queue a shadow prediction on ``ml.shadow.<capability>`` (validated and encoded like any output)."""
    headers: list[tuple[str, bytes]] = [
        (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()), (HEADER_TENANT, env.tenant_id.encode()),
        (HEADER_EVENT_TYPE, env.type.encode()), (HEADER_EVENT_ID, env.event_id.encode())]
    publisher.publish_raw(f"shadow.{capability}", encode(env), partition_key(env), inject_headers(headers))
