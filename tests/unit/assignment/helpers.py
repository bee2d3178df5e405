"""Shared by the assignment tests: a small simulated world and models trained on it (seconds), and the
service assembled on in-memory adapters (state, bus)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mesh.bus import Publisher
from mesh.config import ModelSettings
from mesh.events import Envelope
from mesh.features import EntityState, InMemoryAggregates
from mesh.models import ModelSource, OnnxModel, StaticModel, VersionedModel
from services.assignment.handlers import AssignmentHandler, LabelSink
from services.assignment.model import LambdaMartOptions, NetOptions
from services.assignment.online import OnlineFeatures
from services.assignment.ranker import MODEL_NAME, AssignmentRanker
from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore
from services.assignment.train import Trained, simulated_events, train_all
from simulator import SimConfig

SMALL = SimConfig(tenants=2, users_per_tenant=20, weeks=6, seed=3)
TINY = SimConfig(tenants=1, users_per_tenant=8, weeks=4, seed=5)
S = TypeVar("S", bound=EntityState)


@dataclass(frozen=True)
class World:
    events: list[Envelope]
    trained: Trained

    def static_model(self) -> StaticModel:
        return static_model(self.trained.exported.ensemble.path)


def static_model(path: Path) -> StaticModel:
    return StaticModel(VersionedModel(MODEL_NAME, "7", OnnxModel.load(path, ModelSettings())))


def small_world(out: Path) -> World:
    events = simulated_events(SMALL)
    trained = train_all(events, out, NetOptions(epochs=12, patience=4), LambdaMartOptions(n_estimators=150))
    return World(events, trained)


def tiny_model(out: Path) -> Path:
    """An ensemble ONNX file trained in a second or two: for tests that need the real handler, not quality."""
    trained = train_all(simulated_events(TINY), out, NetOptions(epochs=1, patience=1),
                        LambdaMartOptions(n_estimators=5))
    return trained.exported.ensemble.path


class CountingStore(InMemoryAggregates):
    """The in-memory state store, recording (state kind, keys) of every batched read."""

    def __init__(self) -> None:
        super().__init__(ASSIGNMENT_REDUCERS)
        self.reads: list[tuple[str, int]] = []

    def load_many(self, state_type: type[S], tenant_id: str, entity_ids: Sequence[str]) -> list[S | None]:
        self.reads.append((state_type.kind, len(entity_ids)))
        return super().load_many(state_type, tenant_id, entity_ids)


@dataclass(frozen=True)
class Service:
    """The service's parts on in-memory adapters (what ``__main__`` wires with Redis and Kafka)."""

    state: StateStore
    ranker: AssignmentRanker

    def handler(self, publisher: Publisher, labels: LabelSink | None = None) -> AssignmentHandler:
        return AssignmentHandler(self.state, self.ranker, publisher, labels)

    def apply(self, events: Sequence[Envelope]) -> None:
        self.state.apply(events)


def build_service(model: ModelSource, state: StateStore | None = None) -> Service:
    """The service's parts on an in-memory state (built: it is complete from its first event), or on the
    state given."""
    if state is None:
        state = StateStore(CountingStore())
        state.store.mark_built()
    return Service(state, AssignmentRanker(state, OnlineFeatures(state), model))
