"""Shadow evidence: paired scores of champion and challenger from the joiner's state, the bootstrap interval of
the improvement, and promotion only when it clears the margin with enough outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sunday.ml.v1 import events_pb2

from mesh.events import Envelope, new_envelope
from mesh.features import InMemoryAggregates
from mesh.mlops import Emitter, OutcomeJoiner, paired_scores, promote_on_evidence, reducers, shadow_evidence
from services.assignment.outcomes import SPEC
from services.timeline.outcomes import SPEC as TIMELINE

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def prediction(tenant: str, task: str, ranked: list[str], version: str) -> Envelope:
    p = events_pb2.AssignmentPrediction(task_id=task,
                                        candidates=[events_pb2.RankedCandidate(user_id=u) for u in ranked])
    p.provenance.model_name, p.provenance.model_version = "ranker", version
    return new_envelope(tenant, p, producer="assignment", occurred_at=T0)


def test_paired_scores_take_the_keys_both_versions_were_scored_on() -> None:
    store = InMemoryAggregates(reducers(SPEC))
    joiner = OutcomeJoiner(SPEC, store, Emitter(lambda env: None, lambda: None))
    events = [prediction("t1", "a", ["u1", "u2"], "7"), prediction("t1", "a", ["u2", "u1"], "8"),
              prediction("t1", "b", ["u1", "u2"], "7"), prediction("t1", "b", ["u1", "u2"], "8"),
              prediction("t1", "c", ["u1"], "7"),  # the shadow did not predict c: not paired
              prediction("t2", "a", ["u1"], "7"), prediction("t2", "a", ["u1"], "8")]
    truths = [new_envelope(t, events_pb2.TaskAssigned(task_id=k, assignee_id="u2"), producer="x",
                           occurred_at=T0 + timedelta(days=3)) for t, k in (("t1", "a"), ("t1", "b"), ("t1", "c"),
                                                                            ("t2", "a"))]
    joiner([*events, *truths])
    a, b = paired_scores(store, SPEC, "ranker:7", "ranker:8", tenants=["t1"])
    assert a.tolist() == [0.5, 0.5] and b.tolist() == [1.0, 0.5]  # keys a, b of t1 (rank 2 / 1, 2 / 2)
    a, b = paired_scores(store, SPEC, "ranker:7", "ranker:8")
    assert len(a) == 3 and a.tolist()[-1] == 0.0  # t2's a: u2 was not ranked


def test_evidence_interval_and_gate() -> None:
    champion = np.full(200, 0.4)
    better = shadow_evidence(SPEC, "ranker:7", "ranker:8", champion, champion + 0.1, min_outcomes=100, margin=0.05)
    assert better.improvement == pytest.approx(0.1) and better.ci_low == pytest.approx(0.1)
    assert better.passed and "passes" in better.summary()
    few = shadow_evidence(SPEC, "ranker:7", "ranker:8", champion[:50], champion[:50] + 0.1, min_outcomes=100)
    assert not few.passed and "only 50" in few.summary()
    rng = np.random.default_rng(1)
    noisy = shadow_evidence(SPEC, "ranker:7", "ranker:8", champion, champion + rng.normal(0, 1, 200))
    assert noisy.ci_low < noisy.improvement < noisy.ci_high and not noisy.passed
    # lower is better (timeline's error): a challenger with smaller errors improves by the difference
    lower = shadow_evidence(TIMELINE, "m:1", "m:2", np.full(150, 30.0), np.full(150, 20.0), min_outcomes=100)
    assert lower.improvement == pytest.approx(10.0) and lower.passed


def test_promotion_only_on_passing_evidence() -> None:
    moves: list[tuple[str, str, str, str]] = []

    class Registry:
        def set_alias(self, name: str, alias: str, version: str, *, action: str = "set", actor: str | None = None,
                      reason: str = "") -> None:
            moves.append((name, alias, version, action))

    ok = shadow_evidence(SPEC, "assignment-ranker:7", "assignment-ranker:8", np.zeros(120), np.ones(120))
    assert promote_on_evidence(Registry(), ok)
    assert moves == [("assignment-ranker", "champion", "8", "promote")]
    weak = shadow_evidence(SPEC, "assignment-ranker:7", "assignment-ranker:8", np.zeros(10), np.ones(10))
    assert not promote_on_evidence(Registry(), weak) and len(moves) == 1
