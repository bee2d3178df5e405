from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from mesh.config import ModelSettings
from mesh.models import OnnxModel, choose_providers, clear_session_cache, load_onnx_model
from tests.unit.models.tiny_models import write_scale_model


def test_run_returns_named_outputs_on_cpu(tmp_path: Path, model_settings: ModelSettings,
                                          caplog: pytest.LogCaptureFixture) -> None:
    path = write_scale_model(tmp_path / "m.onnx", 2.0)
    with caplog.at_level(logging.INFO, logger="mesh.models"):
        model = OnnxModel.load(path, model_settings)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = model.run({"x": x})
    assert set(out) == {"y"}
    np.testing.assert_array_equal(out["y"], x * 2)
    assert model.provider == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in caplog.text  # the chosen provider is logged


def test_sessions_are_cached_per_path(tmp_path: Path, model_settings: ModelSettings) -> None:
    a = write_scale_model(tmp_path / "a.onnx", 2.0)
    b = write_scale_model(tmp_path / "b.onnx", 3.0)
    assert load_onnx_model(a, model_settings) is load_onnx_model(str(a), model_settings)
    assert load_onnx_model(a, model_settings) is not load_onnx_model(b, model_settings)
    first = load_onnx_model(a, model_settings)
    clear_session_cache()
    assert load_onnx_model(a, model_settings) is not first


def test_cuda_is_preferred_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_providers() == ["CPUExecutionProvider"]


def test_dummy_inputs_follow_the_graph(tmp_path: Path, model_settings: ModelSettings) -> None:
    model = OnnxModel.load(write_scale_model(tmp_path / "m.onnx", 2.0, n_features=5), model_settings)
    dummy = model.dummy_inputs(size=4)
    assert dummy["x"].shape == (4, 5) and dummy["x"].dtype == np.float32
