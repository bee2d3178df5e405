"""The local stack's MLflow tracking server (deploy/local/stack.sh, http://127.0.0.1:$MESH_MLFLOW_PORT): a model
registered through mesh.models.ModelRegistry over HTTP, its artifacts proxied by the server (mlflow-artifacts:/),
is loaded by alias by another client with its own download folder, as a deployed service does.

The rest of the suite keeps its temp file registries; this is the server path of compose and k8s.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mesh.config import ModelSettings
from mesh.models import CHAMPION, ModelRegistry
from tests.unit.models.tiny_models import write_scale_model

SERVER = f"http://127.0.0.1:{os.environ.get('MESH_MLFLOW_PORT', '15000')}"
DATA_RANGE = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))


def _get(path: str, **query: str) -> dict[str, object]:
    url = f"{SERVER}{path}?{urllib.parse.urlencode(query)}" if query else f"{SERVER}{path}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = bytes(r.read()).decode()
    return json.loads(body) if body.startswith("{") else {"text": body}  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def experiment() -> Iterator[str]:
    """An experiment created with the server's default artifact root (no client-side path), as the bootstrap
    job of compose/k8s creates `sunday-ml`; deleted afterwards."""
    from mlflow import MlflowClient

    assert _get("/health") == {"text": "OK"}, f"no MLflow server on {SERVER}: deploy/local/stack.sh start"
    client = MlflowClient(tracking_uri=SERVER)
    name = f"it-server-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    yield name
    client.delete_experiment(experiment_id)


def _settings(artifact_dir: Path) -> ModelSettings:
    return ModelSettings.model_validate({"tracking_uri": SERVER, "artifact_dir": artifact_dir})


def test_register_and_load_by_alias_over_http(experiment: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    # Only the registry's settings name the server (no MLFLOW_TRACKING_URI in the environment): downloads of
    # mlflow-artifacts:/ URIs go to the registry's own tracking URI.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = f"it-server-scale-{uuid.uuid4().hex[:8]}"
    trainer = ModelRegistry(_settings(tmp_path / "trainer"), experiment)
    try:
        first = trainer.log_and_register(name, write_scale_model(tmp_path / "x2.onnx", 2.0), {"val_mae": 1.0},
                                         {"factor": 2.0}, DATA_RANGE, alias=CHAMPION)
        second = trainer.log_and_register(name, write_scale_model(tmp_path / "x3.onnx", 3.0), {"val_mae": 0.5},
                                          {"factor": 3.0}, DATA_RANGE, alias=CHAMPION)
        assert (first, second) == ("1", "2")

        # the alias as any HTTP client sees it (the REST API the services' MlflowClient calls)
        found = _get("/api/2.0/mlflow/registered-models/alias", name=name, alias=CHAMPION)
        assert found["model_version"]["version"] == second  # type: ignore[index]
        assert found["model_version"]["source"].startswith("mlflow-artifacts:")  # type: ignore[index]

        # a service: its own download folder, nothing shared with the trainer but the server
        service = ModelRegistry(_settings(tmp_path / "service"), experiment)
        resolved = service.load(name, CHAMPION)
        assert resolved.version == second
        assert resolved.path.is_relative_to(tmp_path / "service")
        session = ort.InferenceSession(str(resolved.path), providers=["CPUExecutionProvider"])
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(y, x * 3.0)
        assert service.metric(name, second, "val_mae") == 0.5
    finally:
        MlflowClient(tracking_uri=SERVER).delete_registered_model(name)


def test_an_experiment_made_by_the_registry_keeps_its_artifacts_on_the_server(tmp_path: Path) -> None:
    """The registry creates its experiment without a client-side folder when it talks to a server: the
    artifacts of every client land in the server's store, not in one client's directory."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=SERVER)
    experiment = f"it-server-made-{uuid.uuid4().hex[:8]}"
    name = f"it-server-made-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(_settings(tmp_path / "trainer"), experiment)
    try:
        registry.log_and_register(name, write_scale_model(tmp_path / "x2.onnx", 2.0), {"val_mae": 1.0}, {},
                                  DATA_RANGE, alias=CHAMPION)
        made = client.get_experiment_by_name(experiment)
        assert made is not None and made.artifact_location.startswith("mlflow-artifacts:"), made
        assert not (tmp_path / "trainer" / experiment).exists()
    finally:
        client.delete_registered_model(name)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            client.delete_experiment(found.experiment_id)
