"""Recommend: a person's visible candidates, their person x item contexts, a policy's scores, a slate with
its propensities, and the recommendation as an event (applied to the state, then published).

Visibility is decided here, once: a candidate is a task of the request's tenant (every read is keyed by the
tenant), of a project whose member list names the person, created, and not closed unless the request asks
for closed tasks. Nothing else is ever scored.

Policies (``Policy``): ``hybrid`` (the service's: LinUCB over every context column, the ALS score
included), ``linucb`` (LinUCB over the content columns only), ``als`` (ALS score), ``popularity`` (views of
the task in the tenant), ``random``. LinUCB has one arm per people segment; a policy version owns its
statistics (``version:segment``, and ``version:*`` pooled over segments, which a segment with fewer than
``min_arm_updates`` updates of its own scores by). Every policy draws an epsilon-greedy slate, so every
logged item has a propensity > 0; the draw is seeded by the suggestion id (a retried request gets the
same slate).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.errors import InvalidArgument, NotFound
from mesh.events import Envelope, new_envelope
from mesh.features import AggregateStore
from services.personalization.factors import PolicyModel, behaviour
from services.personalization.linucb import LinUCBConfig, draw_slate
from services.personalization.state import GLOBAL_ARM, ArmState, ItemState, PersonState, ProjectState, arm_key

Array = npt.NDArray[np.float64]
Policy = Literal["hybrid", "linucb", "als", "popularity", "random"]
POLICIES: tuple[Policy, ...] = ("hybrid", "linucb", "als", "popularity", "random")
CONTEXT: tuple[str, ...] = ("bias", "project_share", "type_share", "popularity", "recency", "priority",
                            "assigned", "als", "own_views", "embedding")
"""Context columns (append-only: stored statistics depend on the order)."""
CONTENT = tuple(range(7))
"""Columns plain LinUCB uses: no collaborative signal (ALS, the person's own views) and no text."""
PRODUCER = "personalization"
NAMESPACE = uuid.UUID("0b7e3d0e-2f57-5d1b-93a5-6c1c4f0b9a11")
MAX_K = 50
WEEK_S = 7 * 86400.0

Embedder = Callable[[str, Sequence[str]], Array | None]
"""(tenant, texts) -> unit embeddings, or None when the nlp service is unreachable (the column is 0)."""


@dataclass(frozen=True)
class RecommendRequest:
    tenant_id: str
    user_id: str
    k: int = 5
    surface: str = "for_you"
    request_id: str = ""
    include_closed: bool = False
    now: datetime | None = None


@dataclass(frozen=True)
class Recommendation:
    envelope: Envelope
    candidate_ids: tuple[str, ...]

    @property
    def prediction(self) -> e.PersonalizationPrediction:
        return self.envelope.personalization_prediction

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(i.item_id for i in self.prediction.items)


def suggestion_id(req: RecommendRequest, policy_version: str) -> str:
    """The recommendation's event id: deterministic in the request (its id, or its time to the second)."""
    when = req.request_id or f"{(req.now or datetime.now(UTC)).timestamp():.0f}"
    key = "\x1f".join((req.tenant_id, req.user_id, req.surface, str(req.k), policy_version, when))
    return str(uuid.uuid5(NAMESPACE, key))


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class Recommender:
    """Reads the state, scores, draws, and records; one instance per policy version."""

    def __init__(self, store: AggregateStore, model: PolicyModel, *, policy: Policy = "hybrid",
                 config: LinUCBConfig | None = None, max_candidates: int = 200,
                 embedder: Embedder | None = None) -> None:
        self.store = store
        self.model = model
        self.policy = policy
        self.config = config or LinUCBConfig()
        self.max_candidates = max_candidates
        self.embedder = embedder
        self.columns = CONTENT if policy == "linucb" else tuple(range(len(CONTEXT)))

    @property
    def version(self) -> str:
        return f"{self.policy}-{self.model.version}"

    # ------------------------------------------------------------------ candidates (visibility)
    def candidates(self, tenant_id: str, person: PersonState, include_closed: bool = False,
                   before: float = math.inf) -> list[ItemState]:
        """The person's visible tasks, newest first, at most ``max_candidates``."""
        projects = [p for p in self.store.load_many(ProjectState, tenant_id, person.projects) if p is not None]
        visible = [p for p in projects if person.entity_id in p.members]  # the project's list has the last word
        ids = sorted(((t, tid) for p in visible for tid, t in (p.tasks if include_closed else p.open).items()
                      if t < before), reverse=True)
        items = self.store.load_many(ItemState, tenant_id, [tid for _, tid in ids])
        out = [i for i in items if i is not None and i.created and (include_closed or not i.closed)]
        return out[: self.max_candidates]

    # ------------------------------------------------------------------ contexts
    def contexts(self, tenant_id: str, person: PersonState, items: Sequence[ItemState], now: float,
                 segment: int) -> Array:
        n = len(items)
        x = np.zeros((n, len(CONTEXT)))
        if n == 0:
            return x
        total_p = max(sum(person.project_views.values()), 1)
        total_t = max(sum(person.type_views.values()), 1)
        views = np.array([i.views for i in items], dtype=np.float64)
        x[:, 0] = 1.0
        x[:, 1] = [person.project_views.get(i.project_id, 0) / total_p for i in items]
        x[:, 2] = [person.type_views.get(i.task_type, 0) / total_t for i in items]
        x[:, 3] = np.log1p(views) / max(np.log1p(views.max()), 1.0)
        x[:, 4] = [math.exp(-max(now - i.created_at, 0.0) / WEEK_S) for i in items]
        x[:, 5] = [i.priority / 4.0 for i in items]
        x[:, 6] = [float(i.assignee_id == person.entity_id) for i in items]
        x[:, 7] = self._als(person, items, segment)
        x[:, 8] = [math.log1p(person.task_views.get(i.entity_id, 0)) for i in items]
        x[:, 9] = self._embedding(tenant_id, person, items)
        return x

    def _als(self, person: PersonState, items: Sequence[ItemState], segment: int) -> Array:
        als = self.model.als
        if als is None:
            return np.zeros(len(items))
        user = als.user_vector(person.entity_id)
        if user is None:  # a person ALS has not seen: their segment's mean taste
            user = self.model.cold_vector(segment)
        return np.clip(als.scores(user, [i.entity_id for i in items]), -1.0, 2.0)

    def _embedding(self, tenant_id: str, person: PersonState, items: Sequence[ItemState]) -> Array:
        """cos(item title, titles the person viewed most); 0 without an embedder or when it is down."""
        if self.embedder is None or not person.task_views:
            return np.zeros(len(items))
        by_id = {i.entity_id: i for i in items}
        liked = [by_id[t].title for t, _ in sorted(person.task_views.items(), key=lambda kv: -kv[1])[:5]
                 if t in by_id]
        vecs = self.embedder(tenant_id, [i.title for i in items] + liked) if liked else None
        if vecs is None:
            return np.zeros(len(items))
        profile = vecs[len(items):].mean(axis=0)
        norm = float(np.linalg.norm(profile)) or 1.0
        out: Array = vecs[: len(items)] @ (profile / norm)
        return out

    # ------------------------------------------------------------------ scores
    def scores(self, tenant_id: str, x: Array, items: Sequence[ItemState], segment: int) -> Array:
        if self.policy == "random":
            return np.zeros(len(items))
        if self.policy == "popularity":
            return np.array([float(i.views) for i in items])
        if self.policy == "als":
            return x[:, 7]
        cols = x[:, self.columns]
        own, pooled = self.store.load_many(ArmState, tenant_id, [arm_key(self.version, str(segment)),
                                                                 arm_key(self.version, GLOBAL_ARM)])
        # back-off: a segment's own statistics once it has enough of them, the pooled ones before
        arm = pooled if (own.updates if own is not None else 0) < self.config.min_arm_updates else own
        stats = (arm or ArmState(tenant_id=tenant_id)).stats(cols.shape[1], self.config.ridge)
        return stats.ucb(cols, self.config.alpha)

    def _epsilon(self) -> float:
        return 1.0 if self.policy == "random" else self.config.epsilon

    # ------------------------------------------------------------------ recommend
    def recommend(self, req: RecommendRequest) -> Recommendation:
        """Score the person's visible tasks and record the slate (applied to the state; the caller
        publishes ``envelope``). NotFound for a person the tenant does not know."""
        if not 1 <= req.k <= MAX_K:
            raise InvalidArgument(f"k must be within 1..{MAX_K}")
        if not req.tenant_id or not req.user_id:
            raise InvalidArgument("tenant_id and user_id are required")
        person = self.store.load(PersonState, req.tenant_id, req.user_id)
        if person is None or not (person.joined or person.projects):
            raise NotFound(f"no person {req.user_id!r} in tenant {req.tenant_id!r}")
        now = req.now or datetime.now(UTC)
        items = self.candidates(req.tenant_id, person, req.include_closed, before=now.timestamp())
        segment = self.model.segments.of(behaviour(person))
        x = self.contexts(req.tenant_id, person, items, now.timestamp(), segment)
        scores = self.scores(req.tenant_id, x, items, segment)
        event_id = suggestion_id(req, self.version)
        slate = draw_slate(scores, req.k, self._epsilon(), np.random.default_rng(_seed(event_id)))
        cols = x[:, self.columns]
        prediction = e.PersonalizationPrediction(
            user_id=req.user_id, policy=self.policy, policy_version=self.version, surface=req.surface,
            items=[e.ScoredItem(item_id=items[j].entity_id, score=float(scores[j])) for j in slate.items],
            candidate_ids=[i.entity_id for i in items], candidate_scores=[float(s) for s in scores],
            propensities=list(slate.propensities), context_dim=cols.shape[1],
            contexts=[float(v) for j in slate.items for v in cols[j]], arm=str(segment),
            provenance=c.Provenance(model_name="personalization", model_version=self.version))
        prediction.provenance.predicted_at.FromDatetime(now)
        env = new_envelope(req.tenant_id, prediction, producer=PRODUCER, occurred_at=now, event_id=event_id)
        self.store.apply([env])
        return Recommendation(env, tuple(i.entity_id for i in items))
