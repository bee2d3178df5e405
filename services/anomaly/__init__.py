"""Anomaly service: streaming window features, an Isolation Forest + autoencoder ensemble, alert rules.

What exists today: the per-series streaming detector scored on NAB (`services.anomaly.streaming`).
"""
