"""Shared by the assignment tests: a small simulated world and models trained on it (seconds), and the
service assembled on in-memory adapters (state, online store, bus)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mesh.bus import Publisher
from mesh.config import ModelSettings
from mesh.events import Envelope
from mesh.features import FeatureClient, FeatureRecord, InMemoryFeatureClient, ViewSpec
from mesh.models import ModelSource, OnnxModel, StaticModel, VersionedModel
from services.assignment.handlers import AssignmentHandler
from services.assignment.model import LambdaMartOptions, NetOptions
from services.assignment.online import FeatureSync, OnlineFeatures
from services.assignment.ranker import MODEL_NAME, AssignmentRanker
from services.assignment.state import InMemoryState, StateStore
from services.assignment.train import Trained, simulated_events, train_all
from simulator import SimConfig

SMALL = SimConfig(tenants=2, users_per_tenant=20, weeks=6, seed=3)
TINY = SimConfig(tenants=1, users_per_tenant=8, weeks=4, seed=5)
R = TypeVar("R")


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


@dataclass
class CountingClient:
    """A FeatureClient that records the keys of every read (to check reads are batched)."""

    inner: FeatureClient = field(default_factory=InMemoryFeatureClient)
    reads: list[tuple[str, int]] = field(default_factory=list)

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        self.reads.append((view.name, len(entity_keys)))
        return self.inner.get_online(view, entity_keys)

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        self.inner.push(view, records)


@dataclass(frozen=True)
class Service:
    """The service's parts on in-memory adapters (what ``__main__`` wires with Redis, Feast and Kafka)."""

    state: StateStore
    client: CountingClient
    sync: FeatureSync
    ranker: AssignmentRanker

    def handler(self, publisher: Publisher) -> AssignmentHandler:
        return AssignmentHandler(self.sync, self.ranker, publisher)


def build_service(model: ModelSource, state: StateStore | None = None,
                  client: FeatureClient | None = None) -> Service:
    """The service's parts on in-memory adapters, or on the state and Feast client given."""
    state = state or InMemoryState()
    counting = CountingClient(client or InMemoryFeatureClient())
    online = OnlineFeatures(counting)
    return Service(state, counting, FeatureSync(state, online), AssignmentRanker(state, online, model))
