from __future__ import annotations

from dataclasses import dataclass

import pytest

from mesh.events import Envelope
from simulator import SimConfig, Simulation, Truth


@dataclass(frozen=True)
class Run:
    config: SimConfig
    events: list[Envelope]
    truth: Truth


@pytest.fixture(scope="session")
def world_run() -> Run:
    """Two tenants, three weeks: big enough for the planted structure to show, small enough for 2 cores."""
    config = SimConfig(tenants=2, users_per_tenant=80, weeks=3, seed=11, anomaly_user_fraction=0.08)
    sim = Simulation(config)
    events = list(sim.events())
    return Run(config, events, sim.truth)
