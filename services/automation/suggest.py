"""A mined pattern becomes a candidate suggestion only when the next-action model supports it too.

The model reads ``[trigger, step_1, ..., step_k]`` and predicts what comes next. After a trigger the first
step is person-specific (several people react to the same trigger differently), so the model's support is
about the follow-up: every later step must be among the model's ``top_k`` predictions after the trigger
and the steps before it. Its score is the geometric mean of those steps' probabilities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.automation.miner import MinedPattern
from services.automation.sequences import trigger_token


class NextActionScorer(Protocol):
    def probabilities(self, prefixes: Sequence[Sequence[str]]) -> np.ndarray[tuple[int, int], np.dtype[np.float64]]:
        ...

    def token_id(self, token: str) -> int:
        ...


@dataclass(frozen=True)
class ModelSupport:
    supported: bool
    score: float
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class Candidate:
    """A mined pattern with the model's verdict and a deterministic id."""

    suggestion_id: str
    pattern: MinedPattern
    model: ModelSupport

    @property
    def trigger(self) -> str:
        return trigger_token(self.pattern.trigger_type, self.pattern.condition)


def suggestion_id(p: MinedPattern) -> str:
    """Stable across re-mining and replicas: the same person, trigger and steps give the same id."""
    raw = "\x1f".join((p.tenant_id, p.user_id, p.trigger_type, p.condition, *p.steps))
    return "sug-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def model_support(scorer: NextActionScorer, pattern: MinedPattern, top_k: int = 3) -> ModelSupport:
    trig = trigger_token(pattern.trigger_type, pattern.condition)
    follow = range(1, len(pattern.steps))
    if not follow:
        return ModelSupport(False, 0.0, ())
    probs = scorer.probabilities([[trig, *pattern.steps[:k]] for k in follow])
    ranks, ps = [], []
    for row, k in enumerate(follow):
        idx = scorer.token_id(pattern.steps[k])
        p = float(probs[row][idx]) if idx > 0 else 0.0
        ps.append(max(p, 1e-12))
        ranks.append(int((probs[row] > p).sum()) + 1 if idx > 0 else probs.shape[1] + 1)
    score = float(np.exp(np.mean(np.log(ps))))
    return ModelSupport(all(r <= top_k for r in ranks), score, tuple(ranks))


def candidates(scorer: NextActionScorer | None, patterns: Sequence[MinedPattern], top_k: int = 3
               ) -> list[Candidate]:
    """Every pattern with the model's verdict; without a model (none trained yet) nothing is supported."""
    out = []
    for p in patterns:
        support = model_support(scorer, p, top_k) if scorer is not None else ModelSupport(False, 0.0, ())
        out.append(Candidate(suggestion_id(p), p, support))
    return out
