"""Process environment the model stack needs before mlflow / onnxruntime are imported."""

from __future__ import annotations

import os

_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # progress bars in service logs are noise
}


def quiet_telemetry_env() -> None:
    """Turn off library telemetry and hub downloads (the mesh runs offline); explicit settings win."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
