"""Shared by the assignment tests: a small simulated world and models trained on it (seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mesh.config import ModelSettings
from mesh.events import Envelope
from mesh.models import OnnxModel, VersionedModel
from services.assignment.model import LambdaMartOptions, NetOptions
from services.assignment.ranker import MODEL_NAME, StaticModel
from services.assignment.train import SimData, Trained, simulated_events, train_all

SMALL = SimData(tenants=2, users_per_tenant=20, weeks=6, seed=3)


@dataclass(frozen=True)
class World:
    events: list[Envelope]
    trained: Trained

    def static_model(self) -> StaticModel:
        path = self.trained.exported.ensemble.path
        return StaticModel(VersionedModel(MODEL_NAME, "7", OnnxModel.load(path, ModelSettings())))


def small_world(out: Path) -> World:
    events = simulated_events(SMALL)
    trained = train_all(events, out, NetOptions(epochs=12, patience=4), LambdaMartOptions(n_estimators=150))
    return World(events, trained)
