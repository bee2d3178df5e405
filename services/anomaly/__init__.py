"""Anomaly service (issue 11): what exists, module by module.

- `__main__`: the service process (`python -m services.anomaly`, gRPC port 50054; MESH_SERVING__PORT overrides):
  consumes `sunday.activity` (group `anomaly`), publishes alerts to `ml.alerts`, serves `anomaly.proto`.
- `state` + `handlers`: per-user hour windows, rules memory, incidents and an alert outbox in Redis through the
  mesh aggregate store (each event applied once, atomically with its applied-mark); every batch publishes its
  events' outbox alerts under deterministic ids (a redelivery re-publishes the same ids).
- `model`: the registered model (`anomaly`): both ONNX models merged into one file with the per-tenant norms,
  weight and threshold in its metadata; `ServedEnsemble` scores with a registry version.
- `train`: `python -m services.anomaly.train --source simulator|eventlog`: train, register the challenger,
  promote if it beats the champion on the same validation days (mesh.models lifecycle).
- `windows` / `windows_app`: activity windows (tumbling 1 h and 1 d, hopping 1 h every 15 min) per user,
  project and tenant in a faust table with a changelog topic; idempotent by event id.
- `features`, `ensemble`, `pipeline`: hourly user vectors, Isolation Forest (skl2onnx) + LSTM autoencoder
  (ONNX), normalised per tenant, weight and threshold chosen on a later validation period.
- `rules` / `rules_store`: declarative alert rules (score / static / composite), dedup, cooldown, incidents,
  auto-resolve; per-tenant rules in Redis (GetRules / PutRules: validated, versioned, audited).
- `detector.alerts_for`: the offline path (events -> ml.alerts envelopes with evidence; the service raises
  the same alerts with the same ids); `demo.results`: planted vs detected.
- `server`: the gRPC servicer of `anomaly.proto`.
- `streaming`: the per-series streaming detector scored on NAB (`python -m bench anomaly`).
"""
