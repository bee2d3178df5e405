"""Who gets a task: a noisy choice driven by skills, workload, history and role (the known cause)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator import _vocab as v
from simulator._context import PersonState

# Weights of the true utility; the choice adds Gumbel noise of scale NOISE (a softmax choice).
W_SKILL = 3.0
W_LOAD = -1.5
W_HISTORY = 0.6
W_ROLE = 1.2
W_SENIOR = 0.15
NOISE = 0.7


@dataclass(frozen=True)
class Scored:
    user_id: str
    utility: float
    skill_match: float
    load_ratio: float
    history: float
    role_fit: float


def skill_match(levels: dict[str, int], required: Sequence[str]) -> float:
    """Mean level / 5 over the required skills (0 for a skill the person lacks)."""
    if not required:
        return 0.5
    return sum(levels.get(s, 0) for s in required) / (5.0 * len(required))


def score_candidates(states: Sequence[PersonState], t: float, project_id: str, task_type: str,
                     required: Sequence[str], priority: int) -> list[Scored]:
    scored = []
    for st in states:
        p = st.person
        match = skill_match(st.skill_levels(t), required)
        load = st.remaining_hours(t) / p.capacity_hours
        history = min(1.0, float(np.log1p(st.project_counts.get(project_id, 0)) / np.log(10.0)))
        role = v.ROLES[p.role][0].get(task_type, 0.0)
        senior = W_SENIOR * (p.seniority - 3) * (priority >= 3)
        utility = W_SKILL * match + W_LOAD * load + W_HISTORY * history + W_ROLE * role + senior
        scored.append(Scored(p.user_id, utility, match, load, history, role))
    return scored


def choose(rng: np.random.Generator, scored: Sequence[Scored]) -> int:
    """Index of the chosen candidate: argmax of utility plus Gumbel noise."""
    utilities = np.fromiter((s.utility for s in scored), dtype=float, count=len(scored))
    return int(np.argmax(utilities + rng.gumbel(0.0, NOISE, size=len(scored))))
