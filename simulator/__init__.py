"""Synthetic Sunday.com world: a seeded event stream plus the ground truth for every capability.

>>> from simulator import SimConfig, Simulation
>>> sim = Simulation(SimConfig(tenants=1, users_per_tenant=30, weeks=1, seed=7))
>>> events = list(sim.events())          # mesh Envelopes, in occurred_at order
>>> truth = sim.truth                     # assignments, durations, anomalies, workflows, ...
"""

from simulator._config import SimConfig
from simulator._simulation import Simulation, simulate
from simulator._truth import (
    ActionItem,
    AnomalyTruth,
    AssignmentTruth,
    Candidate,
    CommentTruth,
    MeetingTruth,
    MilestoneTruth,
    PersonTruth,
    ProjectTruth,
    TaskTruth,
    Truth,
    WorkflowStep,
    WorkflowTruth,
    load_truth,
)
from simulator._world import World

__all__ = [
    "ActionItem",
    "AnomalyTruth",
    "AssignmentTruth",
    "Candidate",
    "CommentTruth",
    "MeetingTruth",
    "MilestoneTruth",
    "PersonTruth",
    "ProjectTruth",
    "SimConfig",
    "Simulation",
    "TaskTruth",
    "Truth",
    "WorkflowStep",
    "WorkflowTruth",
    "World",
    "load_truth",
    "simulate",
]
