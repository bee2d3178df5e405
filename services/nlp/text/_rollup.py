"""Rolling sentiment per task and per project: the features other services read.

Each scored comment adds to its task's and its project's :class:`RollingSentiment` with a weight that
grows by 2 every ``HALF_LIFE_DAYS`` of the comment's own time: ``w = 2 ** ((t - EPOCH) / half_life)``.
Then the time-decayed mean sentiment is simply ``sum(w * score) / sum(w)`` and the decayed comment volume
at ``now`` is ``sum(w) * 2 ** (-(now - EPOCH) / half_life)``. All updates are sums, so the state is the same
whatever order comments arrive in (Kafka partitions, redeliveries handled by the store, a replay).

How the service keeps it: two ``mesh.features`` states (:class:`TaskSentimentState`,
:class:`ProjectSentimentState`, kinds ``nlp_task_sentiment`` / ``nlp_project_sentiment``) updated by
:func:`add_comment_sentiment` inside the reducer that handles a scored ``comment_added`` (apply it through
``RedisAggregates`` so each comment counts exactly once); ``.features(now)`` gives the row to publish or
serve (mean score, negative share, decayed volume, count).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, Field

from mesh.features import EntityState, Txn

HALF_LIFE_DAYS = 14.0
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def _weight(at: datetime) -> float:
    return float(2.0 ** ((at - EPOCH).total_seconds() / 86400.0 / HALF_LIFE_DAYS))


@dataclass(frozen=True)
class SentimentFeatures:
    mean_score: float
    """decayed mean of P(positive) - P(negative), in [-1, 1]; 0 without comments"""
    negative_share: float
    """decayed share of comments labelled negative"""
    recent_volume: float
    """decayed number of comments at ``now`` (a comment today counts 1, one half-life ago 0.5)"""
    comments: int


class RollingSentiment(BaseModel):
    weight: float = 0.0
    weighted_score: float = 0.0
    weighted_negative: float = 0.0
    comments: int = 0

    def add(self, score: float, negative: bool, at: datetime) -> None:
        w = _weight(at)
        self.weight += w
        self.weighted_score += w * score
        self.weighted_negative += w * float(negative)
        self.comments += 1

    def features(self, now: datetime) -> SentimentFeatures:
        if self.weight <= 0:
            return SentimentFeatures(0.0, 0.0, 0.0, 0)
        return SentimentFeatures(self.weighted_score / self.weight, self.weighted_negative / self.weight,
                                 self.weight / _weight(now), self.comments)


class TaskSentimentState(EntityState):
    kind: ClassVar[str] = "nlp_task_sentiment"
    sentiment: RollingSentiment = Field(default_factory=RollingSentiment)


class ProjectSentimentState(EntityState):
    kind: ClassVar[str] = "nlp_project_sentiment"
    sentiment: RollingSentiment = Field(default_factory=RollingSentiment)


def add_comment_sentiment(txn: Txn, tenant: str, task_id: str, project_id: str, score: float, negative: bool,
                          at: datetime) -> None:
    """One scored comment into its task's and (when known) its project's rolling sentiment."""
    targets: list[EntityState] = [txn.get(TaskSentimentState, tenant, task_id)]
    if project_id:
        targets.append(txn.get(ProjectSentimentState, tenant, project_id))
    for state in targets:
        assert isinstance(state, TaskSentimentState | ProjectSentimentState)
        state.sentiment.add(score, negative, at)
        state.touch(at)
        txn.put(state)
