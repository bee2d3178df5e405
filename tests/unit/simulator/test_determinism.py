"""Same seed, same bytes and truth; another seed, another world."""

from __future__ import annotations

from simulator import SimConfig, Simulation, Truth


def _run(seed: int) -> tuple[list[bytes], Truth]:
    sim = Simulation(SimConfig(tenants=2, users_per_tenant=25, weeks=2, seed=seed))
    data = [env.SerializeToString() for env in sim.events()]
    return data, sim.truth


def test_same_seed_gives_identical_stream_bytes_and_truth() -> None:
    a_events, a_truth = _run(5)
    b_events, b_truth = _run(5)
    assert a_events == b_events
    assert a_truth == b_truth


def test_different_seed_gives_a_different_world() -> None:
    a_events, a_truth = _run(5)
    c_events, c_truth = _run(6)
    assert a_events != c_events
    assert a_truth.tasks != c_truth.tasks
    assert a_truth.people != c_truth.people
