"""deploy/grafana/dashboards/anomaly.json reads only metrics the code exports (the deploy checks' rules) and
shows what the issue asks: alerts per severity, scores per tenant, rule hits."""

from __future__ import annotations

import json
import re

from tests.unit.deploy.test_manifests import DEPLOY, allowed_metrics, load_yaml, promql_metrics

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "anomaly.json"


def test_anomaly_dashboard_uses_declared_metrics_and_datasources() -> None:
    dash, allowed = json.loads(DASHBOARD.read_text()), allowed_metrics()
    sources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources.yaml")[0]["datasources"]
    uids = {s["uid"] for s in sources}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] in uids and panel["targets"], panel["title"]
        for t in panel["targets"]:
            unknown = promql_metrics(t["expr"]) - allowed
            assert not unknown, f"{panel['title']}: undeclared metrics {unknown}"
    for var in dash["templating"]["list"]:
        for query in (var["definition"], var["query"]["query"]):
            metric = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
            assert metric and metric.group(1) in allowed, (var["name"], query)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert any("mesh_alerts_raised_total" in e and "by (severity)" in e for e in exprs)
    assert any("mesh_alerts_raised_total" in e and "by (rule" in e for e in exprs)
    assert any("mesh_prediction_score_bucket" in e and "tenant" in e for e in exprs)
