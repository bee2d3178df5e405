"""Anomaly service (issue 11): what exists, module by module.

- `windows` / `windows_app`: activity windows (tumbling 1 h and 1 d, hopping 1 h every 15 min) per user,
  project and tenant in a faust table with a changelog topic; idempotent by event id.
- `features`, `train`, `ensemble`, `pipeline`: hourly user vectors, Isolation Forest (skl2onnx) + LSTM
  autoencoder (ONNX), normalised per tenant, weight and threshold chosen on a later validation week.
- `rules`: declarative alert rules (score / static / composite), dedup, cooldown, incidents, auto-resolve.
- `detector.alerts_for`: events -> ml.alerts envelopes with evidence; `demo.results`: planted vs detected.
- `server`: the gRPC servicer of `anomaly.proto` (default port 50054).
- `streaming`: the per-series streaming detector scored on NAB (`python -m bench anomaly`).

Not yet: the service process (`__main__` with ConsumerRunner + state in Redis) and model registration.
"""
