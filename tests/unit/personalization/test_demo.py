"""The demo's personalization function (scripts/demo.py calls it): the service's policy against random and
popularity on the same simulated world, in process."""

from __future__ import annotations

from services.personalization.demo import results


def test_demo_results_compare_the_service_policy_with_random_and_popularity() -> None:
    out = results(users=20, weeks=1, seed=3, progress=False)
    assert out["mode"] == "in process"
    assert set(out["ctr"]) == {"service", "popularity", "random", "oracle"}
    assert out["shown"]["service"] == out["shown"]["random"] > 0  # the same requests
    assert out["ctr"]["random"] < out["ctr"]["service"] <= out["ctr"]["oracle"]
    assert out["regret_vs_oracle"]["oracle"] == 0.0
