"""The demo functions the lead calls from ``make demo`` show what they say they show."""

from __future__ import annotations

from mesh.mlops import KIND_DRIFT
from mesh.mlops.demo import drift_demo, shadow_demo


def test_drift_demo_alerts_on_the_drifted_tenant_only() -> None:
    lines: list[str] = []
    alerts = drift_demo(out=lines.append)
    assert [(a.tenant_id, a.alert.kind) for a in alerts] == [("globex", KIND_DRIFT)]
    assert any("globex" in line and "model_drift" in line for line in lines)


def test_shadow_demo_finds_the_better_challenger() -> None:
    evidence = shadow_demo(out=lambda line: None)
    assert evidence.outcomes == 300 and evidence.challenger_mean > evidence.champion_mean and evidence.passed
